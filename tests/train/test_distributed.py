"""train.py beyond one process, on CPU: torchrun (gloo), gradient accumulation, kill + resume, token shards.

Every run here has dropout 0 and the same tokenizer (the fixture's), so runs with the same
global batch compute the same mathematics: one process over 8 rows, 2 accumulated
micro-batches of 4, or 2 ranks of 4 whose gradients DDP averages. They differ only in the
order of floating-point additions (a mean over 8 rows against the mean of two means of 4,
gloo's all-reduce), about 1e-7 relative per step, which AdamW carries over the run's 30 steps.
Hence the tolerance: 1e-4 relative on validation losses (the runs' first and last losses
differ by over 10 %: a wrong batch split, a missing all-reduce or a double-counted
micro-batch moves them by far more). Runs that do the same additions in the same order (a
2-process run killed and resumed vs uninterrupted, shards vs memory) must agree to 1e-6.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from lts.families.gpt2 import ArchConfig

pytestmark = pytest.mark.heavy  # whole searches, clusters or process groups: seconds each

REPO = Path(__file__).resolve().parents[2]
ARCH = ArchConfig(n_layer=2, n_embd=48, n_inner=96, n_head=4, n_positions=128)
STEPS = 30
SAME_MATH = 1e-4   # same global batch, different addition order (see the module docstring)
SAME_OPS = 1e-6    # the same additions in the same order


def common(workdir: Path) -> list[str]:
    return [str(workdir / "arch"), "--data", str(workdir / "*.txt"), "--tokenizer", str(workdir / "tok"),
            "--max-steps", str(STEPS), "--seq-len", "32", "--eval-every", "10", "--eval-windows", "16",
            "--save-every", "3", "--dropout", "0", "--warmup-steps", "5", "--lr", "3e-3", "--threads", "1",
            "--seed", "3", "--no-progress"]


def env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]


def run(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env())
    return proc


def metrics(out: Path) -> dict:
    return json.loads((out / "train_metrics.json").read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_text, tiny_tokenizer_dir) -> Path:
    import shutil

    d = tmp_path_factory.mktemp("dist")
    ARCH.to_hf_config().save_pretrained(d / "arch")
    shutil.copytree(tiny_tokenizer_dir, d / "tok")
    paras = tiny_text[:80_000].split("\n\n")
    (d / "a.txt").write_text("\n\n".join(paras[: len(paras) // 2]), encoding="utf-8")
    (d / "b.txt").write_text("\n\n".join(paras[len(paras) // 2:]), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def one_process(workdir) -> dict:
    """The reference: one process, batch 8."""
    out = workdir / "one"
    proc = run([sys.executable, "train.py", *common(workdir), "--batch-size", "8", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return metrics(out)


@pytest.fixture(scope="module")
def two_processes(workdir) -> dict:
    out = workdir / "two"
    proc = run([*torchrun(2), "train.py", *common(workdir), "--batch-size", "4", "--out", str(out)])
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.stdout.count("saved ") == 1, "rank 0 alone reports (and writes) the model"
    assert "x 2 processes" in proc.stdout and "2 processes (gloo)" in proc.stdout
    return metrics(out)


def losses(m: dict) -> list[float]:
    return [h["val_loss"] for h in m["history"]]


def test_two_processes_reach_the_loss_of_one_with_the_same_global_batch(one_process, two_processes):
    assert two_processes["world_size"] == 2 and two_processes["global_batch"] == one_process["global_batch"] == 8
    assert two_processes["tokens_seen"] == one_process["tokens_seen"] == STEPS * 8 * 32
    first, last = losses(one_process)[0], losses(one_process)[-1]
    assert first - last > 0.05 * first, "the run must learn for the comparison to mean anything"
    assert losses(two_processes) == pytest.approx(losses(one_process), rel=SAME_MATH)


def test_grad_accum_at_half_the_batch_matches_the_full_batch(workdir, one_process):
    out = workdir / "accum"
    proc = run([sys.executable, "train.py", *common(workdir), "--batch-size", "4", "--grad-accum", "2",
                "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = metrics(out)
    assert m["grad_accum"] == 2 and m["global_batch"] == 8 and m["tokens_seen"] == one_process["tokens_seen"]
    assert losses(m) == pytest.approx(losses(one_process), rel=SAME_MATH)


def test_grad_accum_across_two_processes(workdir, one_process):
    out = workdir / "two_accum"
    proc = run([*torchrun(2), "train.py", *common(workdir), "--batch-size", "2", "--grad-accum", "2",
                "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = metrics(out)
    assert m["global_batch"] == 8 and m["world_size"] == 2
    assert losses(m) == pytest.approx(losses(one_process), rel=SAME_MATH)


def test_sigkill_of_a_two_process_run_then_resume(workdir, two_processes):
    out = workdir / "killed"
    ckpt = workdir / "killed.ckpt" / "state.pt"
    cmd = [*torchrun(2), "train.py", *common(workdir), "--batch-size", "4", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    # every process of the run at once (torchrun starts its ranks in sessions of their own), as a lost node does
    ranks = psutil.Process(proc.pid).children(recursive=True)
    assert len(ranks) >= 2, "the launcher's two ranks"
    proc.kill()
    for p in ranks:
        p.kill()
    assert proc.wait() == -signal.SIGKILL, "the run ended before the kill: make it longer"
    psutil.wait_procs(ranks, timeout=30)  # not the launcher: psutil would reap it before Popen sees its status
    assert ckpt.exists() and not out.exists(), "a killed run leaves its checkpoint and no model folder"
    meta = json.loads((ckpt.parent / "meta.json").read_text())
    assert meta["world_size"] == 2

    one = run([sys.executable, "train.py", *common(workdir), "--batch-size", "4", "--out", str(out), "--resume"])
    assert one.returncode == 2 and "written by 2 processes" in one.stderr, one.stderr
    resumed = run([*torchrun(2), "train.py", *common(workdir), "--batch-size", "4", "--out", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    m = metrics(out)
    assert 3 <= m["resumed_from_step"] < STEPS and f"resuming from step {m['resumed_from_step']}" in resumed.stdout
    assert losses(m) == pytest.approx(losses(two_processes), rel=SAME_OPS)
    assert not ckpt.parent.exists()


def test_world_size_larger_than_the_batches_is_refused(workdir):
    out = workdir / "too_many"
    proc = run([*torchrun(2), "train.py", *common(workdir), "--batch-size", "200", "--seq-len", "120",
                "--out", str(out)])
    # torchrun's launcher then raises ChildFailedError with its own summary and traceback (its design, outside
    # train.py); train.py's part: one line from rank 0, exit status 2 for each rank, no traceback of ours
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(ours) == 1 and "world size 2 is larger than the number of batches" in ours[0], proc.stderr[-3000:]
    assert "exitcode  : 2" in proc.stderr
    frames = [line for line in proc.stderr.splitlines() if line.strip().startswith("File ")]
    # Ours: train.py and the lts package of this checkout (the checkout's own folder may well be called lts, and
    # torchrun's frames then sit under <checkout>/.venv: those are torch's).
    mine = (str(REPO / "train.py"), str(REPO / "lts") + os.sep)
    assert not [f for f in frames if any(m in f for m in mine)], proc.stderr[-3000:]
    assert not out.exists() and not (workdir / "too_many.ckpt").exists()


def test_a_tokenizer_trained_here_is_shared_by_the_ranks(workdir):
    """No --tokenizer, no hub: rank 0 trains one BPE and hands it to rank 1 (two BPEs could differ)."""
    out = workdir / "own_tok"
    args = [a for a in common(workdir) if a not in ("--tokenizer", str(workdir / "tok"))]
    proc = run([*torchrun(2), "train.py", *args, "--batch-size", "4", "--max-steps", "3", "--eval-every", "3",
                "--tokenizer-vocab", "300", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained here") == 1 and metrics(out)["vocab_size"] == 300


def test_bf16_autocast_on_the_cpu(workdir, one_process):
    out = workdir / "bf16"
    proc = run([sys.executable, "train.py", *common(workdir), "--batch-size", "8", "--device", "cpu",
                "--dtype", "bf16", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = metrics(out)
    assert m["dtype"] == "bf16" and "cpu, bf16" in proc.stdout
    # bf16 keeps 8 bits of mantissa: the same run, not the same digits (the fp32 losses within 2 %)
    assert losses(m) == pytest.approx(losses(one_process), rel=0.02)
    assert losses(m) != losses(one_process), "autocast made no difference: was it on?"


# ---------------------------------------------------------------------------- shards


def test_shards_give_the_same_tokens_and_batches_as_memory(tmp_path, tiny_text, tiny_tokenizer_dir):
    from lts.core.hub import load_tokenizer
    from lts.train.data import Batches, eval_windows, tokenize_stream
    from lts.train.shards import open_split, read_meta, stream_digest, write_shards

    tok = load_tokenizer(str(tiny_tokenizer_dir))
    paras = [p for p in tiny_text[:60_000].split("\n\n") if p.strip()]
    docs = {"train": paras[:-20], "validation": paras[-20:]}
    write_shards(tmp_path / "sh", tok, docs, {"name": "test"}, shard_tokens=997)  # windows cross shard ends
    meta = read_meta(tmp_path / "sh")
    shards = open_split(tmp_path / "sh", meta, "train")
    memory = tokenize_stream(tok, docs["train"])
    assert len(meta["splits"]["train"]["files"]) > 5 and meta["dtype"] == "<u2"
    assert len(shards) == len(memory) and shards.digest == stream_digest(memory)
    assert np.array_equal(shards[0:len(shards)], memory)
    rng = np.random.default_rng(0)
    for a in rng.integers(0, len(memory) - 100, 50):
        assert np.array_equal(shards[a:a + 97], memory[a:a + 97])
    ours, theirs = Batches(shards, 32, 8, seed=5), Batches(memory, 32, 8, seed=5)
    for step in range(0, 200, 7):
        assert np.array_equal(ours.batch(step), theirs.batch(step))
    val = open_split(tmp_path / "sh", meta, "validation")
    assert np.array_equal(eval_windows(val, 32, 16), eval_windows(tokenize_stream(tok, docs["validation"]), 32, 16))


def test_training_on_shards_equals_training_in_memory(workdir, one_process):
    shards = workdir / "shards"
    first = run([sys.executable, "train.py", *common(workdir), "--batch-size", "8", "--shards", str(shards),
                 "--shard-tokens", "4000", "--out", str(workdir / "sharded")])
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"tokenized local files (2: a.txt, b.txt) into {shards}" in first.stdout
    assert losses(metrics(workdir / "sharded")) == pytest.approx(losses(one_process), rel=SAME_OPS)
    # a later run (two processes) reads the folder as it is, without the data flags
    args = [a for a in common(workdir) if a not in ("--data", str(workdir / "*.txt"))]
    again = run([*torchrun(2), "train.py", *args, "--batch-size", "4", "--shards", str(shards),
                 "--max-steps", "3", "--eval-every", "3", "--out", str(workdir / "sharded2")])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "written earlier" in again.stdout and "tokenized" not in again.stdout
    assert not [p for p in workdir.iterdir() if p.name.startswith(".shards")], "temp folders left behind"


def test_streaming_into_shards(workdir):
    shards = workdir / "streamed"
    proc = run([sys.executable, "train.py", *common(workdir), "--batch-size", "4", "--max-steps", "3",
                "--eval-every", "3", "--shards", str(shards), "--streaming", "--val-fraction", "0.5",
                "--out", str(workdir / "streamed_model")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((shards / "tokens.json").read_text())
    assert meta["source"]["streaming"] is True and "streamed" in meta["source"]["name"]
    assert meta["splits"]["train"]["tokens"] > 0 and meta["splits"]["validation"]["tokens"] > 0


@pytest.mark.slow
def test_compile_trains_like_eager(workdir, one_process):
    """--compile (inductor, C++ on the CPU): the losses of eager up to fused-kernel rounding. ~30 s of compiling."""
    out = workdir / "compiled"
    proc = run([sys.executable, "train.py", *common(workdir), "--batch-size", "8", "--compile", "--out", str(out)])
    if proc.returncode == 2 and "C++ compiler" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = metrics(out)
    assert m["compile"] is True and "torch.compile" in proc.stdout
    assert losses(m) == pytest.approx(losses(one_process), rel=1e-3)


def test_a_per_layer_model_trains_on_two_processes_as_on_one(workdir):
    """The LTS paper's kind (n_inner, n_head per layer): torchrun's two ranks reach one process's losses."""
    per_layer = ArchConfig(n_layer=2, n_embd=48, n_inner=[96, 64], n_head=[4, 2], n_positions=128)
    per_layer.to_hf_config().save_pretrained(workdir / "per_layer")
    args = [str(workdir / "per_layer"), *common(workdir)[1:], "--max-steps", "6", "--eval-every", "3"]
    one = run([sys.executable, "train.py", *args, "--batch-size", "8", "--out", str(workdir / "pl_one")])
    assert one.returncode == 0, one.stderr[-3000:]
    two = run([*torchrun(2), "train.py", *args, "--batch-size", "4", "--out", str(workdir / "pl_two")])
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = metrics(workdir / "pl_one"), metrics(workdir / "pl_two")
    assert a["n_inner"] == b["n_inner"] == [96, 64] and a["n_head"] == [4, 2]
    assert json.loads((workdir / "pl_two" / "config.json").read_text())["model_type"] == "lts_gpt2"
    assert losses(a) == pytest.approx(losses(b), rel=SAME_MATH) and len(losses(a)) == 2
