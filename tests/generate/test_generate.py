"""generate_text.py end to end on a tiny local GPT-2 (no hub): backends agree, seeds repeat, bad input is one line.

Most CLI checks call ``main`` through ``run_cli`` in this process (the same code path as the
script, minus the ~10 s interpreter + transformers start-up); a few run the real script in a
subprocess to prove the process itself prints one clean line. One ONNX export per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import load_script, main_in_process

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "generate_text.py"
PROMPT = "The function returns"


def _load_script():
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def script():
    return _load_script()


GREEDY = ["--greedy", "--max-new-tokens", "24"]


@pytest.fixture(scope="module", autouse=True)
def _first_onnx_process(tmp_path_factory, tiny_model_dir):
    """Start the real script's first ONNX run at once: it exports the model into a fresh cache.

    It runs beside the in-process tests below (the export takes most of this file's time);
    the tests that need the cache wait for it through `first_onnx_run`.
    """
    cache = tmp_path_factory.mktemp("onnx_cache")
    argv = [tiny_model_dir, tiny_model_dir, PROMPT, *GREEDY, "--backend", "onnx", "--verbose",
            "--onnx-cache-dir", cache]
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *map(str, argv)], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield cache, proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def first_onnx_run(_first_onnx_process) -> tuple[Path, subprocess.CompletedProcess]:
    cache, proc = _first_onnx_process
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return cache, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def onnx_cache(first_onnx_run) -> Path:
    return first_onnx_run[0]


def cli(script, capsys, *argv: str) -> tuple[int, str, str]:
    return main_in_process(script, SCRIPT, capsys, *argv)


def _env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def subprocess_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, argv)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120)


def save_gpt2(out: Path, vocab_size: int, tokenizer_dir: Path | None = None, n_positions: int = 128) -> Path:
    """A 1-layer GPT-2 with the given vocabulary size (to pair with a tokenizer of another size)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_embd=32, n_inner=64, n_head=2, vocab_size=vocab_size, n_positions=n_positions,
                     bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(out)
    if tokenizer_dir is not None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one line on stderr, nothing on stdout


@pytest.fixture(scope="module")
def bad_dirs(tmp_path_factory, tiny_tokenizer_dir) -> dict[str, Path]:
    from transformers import DistilBertConfig

    root = tmp_path_factory.mktemp("bad")
    bert = root / "bert"  # an encoder with no causal-LM head in transformers
    DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64).save_pretrained(bert)
    remote = root / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "my_secret_lm", "auto_map": {
        "AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XModel"}}))
    return {"bert": bert, "remote": remote,
            "small_vocab": save_gpt2(root / "small_vocab", 256)}  # tokenizer has more tokens than the model


LONG = " ".join(f"word{i}" for i in range(200))

BAD_INPUTS = {
    "empty prompt": ([], "", [], "prompt is empty"),
    "zero new tokens": ([], PROMPT, ["--max-new-tokens", "0"], "--max-new-tokens"),
    "negative new tokens": ([], PROMPT, ["--max-new-tokens", "-3"], "--max-new-tokens"),
    "zero temperature": ([], PROMPT, ["--temperature", "0"], "--greedy"),
    "negative temperature": ([], PROMPT, ["--temperature", "-1"], "--temperature"),
    "top-p zero": ([], PROMPT, ["--top-p", "0"], "(0, 1]"),
    "top-p above one": ([], PROMPT, ["--top-p", "1.01"], "(0, 1]"),
    "bad backend": ([], PROMPT, ["--backend", "tensorrt"], "invalid choice"),
    "unknown precision": ([], PROMPT, ["--backend", "onnx", "--precision", "int4"], "invalid choice"),
    "int8 on torch": ([], PROMPT, ["--precision", "int8"], "needs --backend onnx"),
    "stream several": ([], PROMPT, ["--stream", "-n", "2"], "--stream"),
    "missing folder": (["./no/such/folder"], PROMPT, [], "folder not found"),
    "hub id offline": (["no-such-model-xyz"], PROMPT, [], "pass a local folder"),
    "not a causal LM": (["bert"], PROMPT, [], "not a causal language model"),
    "tokenizer folder as model": (["tokenizer"], PROMPT, [], "no config.json"),
    "remote code": (["remote"], PROMPT, [], "trust_remote_code"),
    "tokenizer larger than vocab": (["small_vocab"], PROMPT, [], "do not belong together"),
    "prompt longer than context": ([], LONG, ["--max-new-tokens", "8"], "refused"),
    "new tokens fill the context": ([], PROMPT, ["--max-new-tokens", "128"], "leaves no room"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(script, capsys, case, tiny_model_dir, tiny_tokenizer_dir, bad_dirs):
    model, prompt, flags, expected = BAD_INPUTS[case]
    dirs = dict(bad_dirs, tokenizer=tiny_tokenizer_dir)
    model_arg = (str(dirs.get(model[0], model[0])) if model else str(tiny_model_dir))
    rc, out, err = cli(script, capsys, model_arg, tiny_tokenizer_dir, prompt, *flags)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("generate_text.py: error: ") and expected in lines[0], lines[0]
    assert out == ""


def test_process_prints_one_line_for_a_hub_id_offline():
    """The real script: no traceback, no retries or warnings, one line, exit 2 (checked before torch is imported)."""
    proc = subprocess_cli("gpt2", "gpt2", "Hello")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "'gpt2' is not a local folder" in proc.stderr and "pass a local folder" in proc.stderr
    assert proc.stdout == ""


# ---------------------------------------------------------------------------------------------
# torch backend (these run while the first ONNX export is under way)


def test_num_return_sequences(script, capsys, tiny_model_dir):
    rc, out, err = cli(script, capsys, tiny_model_dir, tiny_model_dir, PROMPT, "-n", 3, "--seed", 1,
                       "--max-new-tokens", 12, "--temperature", 1.5, "--top-k", 0, "--top-p", 1.0)
    assert rc == 0, err
    parts = out.split("=== sequence ")
    assert [p.split(" ")[0] for p in parts[1:]] == ["1/3", "2/3", "3/3"]
    texts = {p.split("\n", 1)[1] for p in parts[1:]}
    assert len(texts) == 3


def test_padded_model_vocabulary_never_emits_unknown_ids(tmp_path, tiny_tokenizer_dir):
    """A model whose vocabulary is the tokenizer's padded to a multiple of 64 is accepted; padding ids never
    come out."""
    from transformers import AutoTokenizer

    from lts.generate.decode import GenerateSettings, run

    n_tok = len(AutoTokenizer.from_pretrained(tiny_tokenizer_dir))
    padded = -(-(n_tok + 1) // 64) * 64
    model_dir = save_gpt2(tmp_path / "padded", padded, tiny_tokenizer_dir)
    # Make the padding rows win without suppression: the final LayerNorm's bias points along u and
    # the (tied) output rows of the padding ids are 3u, so their logits are ~3|u|^2 against ~0 for the rest.
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(model_dir / "model.safetensors")
    u = torch.randn(weights["transformer.ln_f.bias"].shape, generator=torch.Generator().manual_seed(0))
    weights["transformer.ln_f.bias"] = u
    weights["transformer.wte.weight"][n_tok:] = 3 * u
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    result = run(GenerateSettings(model=str(model_dir), tokenizer=str(model_dir), prompt=PROMPT, greedy=True,
                                  max_new_tokens=10, threads=1))
    assert result.new_tokens == 10
    assert max(result.token_ids[0]) < n_tok


def test_truncate_prompt_keeps_the_end_and_warns(script, capsys, caplog, tiny_model_dir):
    long_prompt = " ".join(f"word{i}" for i in range(200))
    with caplog.at_level("WARNING", logger="lts"):
        rc, out, err = cli(script, capsys, tiny_model_dir, tiny_model_dir, long_prompt, "--truncate-prompt",
                           "--greedy", "--max-new-tokens", 8)
    assert rc == 0, err
    assert any("prompt truncated" in r.getMessage() for r in caplog.records)
    assert "word199" in out and "word0 " not in out


# ---------------------------------------------------------------------------------------------
# Backends agree


def test_onnx_logits_match_torch_for_prefill_and_decode(tiny_model_dir, onnx_cache):
    """The exported graph computes what the torch model does: prefill, then steps on the cache, batch 2."""
    import numpy as np
    import torch

    from lts.core.hub import load_causal_lm
    from lts.cost.target import CPUTarget
    from lts.generate.onnx_kv import OnnxKVModel, cached_kv_onnx

    model = load_causal_lm(tiny_model_dir)
    folder, exported = cached_kv_onnx(model, onnx_cache)
    assert not exported, "the second request for the same model must hit the cache"
    onnx_model = OnnxKVModel(folder, CPUTarget(threads=1))
    ids = torch.tensor([[5, 17, 99, 3, 42], [7, 7, 300, 1, 2]])
    logits, past = onnx_model.forward(ids.numpy(), onnx_model.empty_past(2))
    seq = ids
    for step in range(4):
        with torch.no_grad():
            ref = model(seq).logits[:, -1, :].numpy()  # (B, V), no cache: an independent reference
        np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=1e-4, err_msg=f"step {step}")
        assert past[0].shape[2] == seq.shape[1]  # (B, H, P, D): the cache grew by one position per step
        nxt = torch.tensor(ref.argmax(-1))[:, None]
        seq = torch.cat([seq, nxt], dim=1)
        logits, past = onnx_model.forward(nxt.numpy(), past)


def test_cli_greedy_output_identical_for_torch_and_onnx(script, capsys, tiny_model_dir, first_onnx_run):
    cache, proc = first_onnx_run  # the real script, which exported the model on the way
    rc, torch_out, err = cli(script, capsys, tiny_model_dir, tiny_model_dir, PROMPT, *GREEDY, "--backend", "torch")
    assert rc == 0, err
    assert proc.stdout == torch_out
    assert torch_out.startswith(PROMPT) and len(torch_out) > len(PROMPT) + 10
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    verbose = proc.stderr.strip().splitlines()[-1]
    for word in ("load", "time to first token", "tokens/s", "backend onnx", "onnx built (the search's decode graph)"):
        assert word in verbose, verbose
    rc, again, err = cli(script, capsys, tiny_model_dir, tiny_model_dir, PROMPT, *GREEDY, "--backend", "onnx",
                         "--verbose", "--onnx-cache-dir", cache)
    assert rc == 0 and again == torch_out
    assert "onnx cached" in err, err


def test_gpt2_runs_the_searchs_own_decode_graph_without_an_export(tiny_model_dir, tmp_path, monkeypatch):
    """A GPT-2 gets lts.cost.graph's KV graph (what the search measures) filled with its weights, no export
    (how long it takes is measured by benchmarks/, not here)."""
    import onnx
    import torch

    from lts.core.hub import load_causal_lm
    from lts.families.gpt2 import ArchConfig
    from lts.families.gpt2.graph import kv_graph_spec
    from lts.generate.onnx_kv import META_FILE, MODEL_FILE, cached_kv_onnx

    model = load_causal_lm(tiny_model_dir)

    def no_export(*args, **kwargs):
        raise AssertionError("a GPT-2 must not go through torch.onnx.export")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    folder, built = cached_kv_onnx(model, tmp_path)
    meta = json.loads((folder / META_FILE).read_text())
    assert built and meta["builder"] == "lts"
    graph = onnx.load(folder / MODEL_FILE).graph
    spec = kv_graph_spec(ArchConfig.from_hf_config(model.config)).model.graph
    assert [n.op_type for n in graph.node] == [n.op_type for n in spec.node]  # the very graph, its weights in it
    assert {i.name for i in graph.initializer} >= {name for name, _ in kv_graph_spec(
        ArchConfig.from_hf_config(model.config)).weights}


@pytest.mark.heavy
def test_other_families_go_through_the_torch_exporter(tmp_path):
    """GPT-Neo (not a GPT-2): exported with torch's exporter; greedy tokens as transformers' generate."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    from lts.cost.target import CPUTarget
    from lts.generate.onnx_kv import META_FILE, OnnxKVModel, cached_kv_onnx

    torch.manual_seed(0)
    config = GPTNeoConfig(vocab_size=96, hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=64,
                          attention_types=[[["global", "local"], 1]], window_size=8, eos_token_id=95,
                          bos_token_id=95)
    model = GPTNeoForCausalLM(config).eval()
    folder, built = cached_kv_onnx(model, tmp_path)
    assert built and json.loads((folder / META_FILE).read_text())["builder"] == "torch.onnx.export"
    ids = torch.tensor([[3, 14, 15, 9, 2]])
    with torch.inference_mode():
        want = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                              pad_token_id=95)
    got = OnnxKVModel(folder, CPUTarget(threads=1)).generate(ids, 12, lambda i, s: s, do_sample=False,
                                                             eos_token_id=95, pad_token_id=95)
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("prompt", ["a", "Return the value of x", "class C:\n    def f(self):"])
def test_greedy_token_ids_identical_for_both_backends(tiny_model_dir, onnx_cache, prompt):
    from lts.generate.decode import GenerateSettings, run

    common = dict(model=str(tiny_model_dir), tokenizer=str(tiny_model_dir), prompt=prompt, greedy=True,
                  max_new_tokens=40, threads=1, onnx_cache_dir=str(onnx_cache))
    a = run(GenerateSettings(**common, backend="torch"))
    b = run(GenerateSettings(**common, backend="onnx"))
    assert a.token_ids == b.token_ids
    assert a.new_tokens == b.new_tokens > 0
    assert not b.exported and b.backend == "onnx"


def test_sampling_same_seed_same_text_on_both_backends(script, capsys, tiny_model_dir, onnx_cache):
    base = [tiny_model_dir, tiny_model_dir, PROMPT, "--max-new-tokens", 30, "--onnx-cache-dir", onnx_cache]
    outs = {}
    for backend in ("torch", "onnx"):
        for seed in (3, 3, 4):
            rc, out, err = cli(script, capsys, *base, "--seed", seed, "--backend", backend)
            assert rc == 0, err
            outs.setdefault((backend, seed), []).append(out)
    assert outs[("torch", 3)][0] == outs[("torch", 3)][1]
    assert outs[("onnx", 3)][0] == outs[("onnx", 3)][1]
    assert outs[("torch", 3)][0] != outs[("torch", 4)][0], "a different seed should give different text"
    # One decoding recipe (same processors, same RNG draws): the backends sample the same text too.
    assert outs[("torch", 3)][0] == outs[("onnx", 3)][0]
    assert outs[("torch", 4)][0] == outs[("onnx", 4)][0]


def test_stream_prints_the_same_text(script, capsys, tiny_model_dir, onnx_cache):
    base = [tiny_model_dir, tiny_model_dir, PROMPT, "--max-new-tokens", 20, "--seed", 11]
    for backend in ("torch", "onnx"):
        rc, plain, _ = cli(script, capsys, *base, "--backend", backend, "--onnx-cache-dir", onnx_cache)
        rc2, streamed, err = cli(script, capsys, *base, "--backend", backend, "--stream",
                                 "--onnx-cache-dir", onnx_cache)
        assert rc == rc2 == 0, err
        assert streamed == plain


# ---------------------------------------------------------------------------------------------
# ONNX cache


def test_onnx_cache_is_keyed_by_content(tiny_model_dir, onnx_cache):
    import torch

    from lts.core.hub import load_causal_lm
    from lts.generate.onnx_kv import default_cache_dir, model_content_hash

    model = load_causal_lm(tiny_model_dir)
    key = model_content_hash(model)
    assert key == model_content_hash(load_causal_lm(tiny_model_dir))
    # One finished folder for this model, no temp leftovers (the int8 test may add its own "-int8-" folder).
    assert [p.name for p in onnx_cache.iterdir() if "-int8-" not in p.name] == [key]
    assert json.loads((onnx_cache / key / "meta.json").read_text())["n_layers"] == 2
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.bias[0] += 1e-3
    assert model_content_hash(model) != key
    os.environ["LTS_CACHE_DIR"], old = "/some/where", os.environ.get("LTS_CACHE_DIR")
    try:
        assert default_cache_dir() == Path("/some/where/onnx")
    finally:
        if old is None:
            del os.environ["LTS_CACHE_DIR"]
        else:
            os.environ["LTS_CACHE_DIR"] = old


# int8 vs fp32 logits, |difference| at most this. Measured over 24 greedy steps of PROMPT on the tiny GPT-2
# (d64, 2 layers) for seeds 0-5: worst 0.014-0.017 (about 10% of the logits' std of ~0.17), the error of
# ONNX Runtime's dynamic quantization (7-bit int8 weights, uint8 activations: exact sums on every x86 CPU,
# lts/cost/quantize.py). 0.03 is ~2x that worst case; a broken quantization (wrong scales, a weight left out
# of the rescale) misses it by orders of magnitude, and 8-bit weights on AVX2 without VNNI (saturated sums)
# reach 0.045 (seed 0; up to 0.135 over seeds 0-5).
INT8_LOGIT_ATOL = 0.03


def test_int8_weights_run_cached_and_agree_with_fp32(script, capsys, tiny_model_dir, onnx_cache):
    """--precision int8: the fp32 graph with MatMul weights quantized; cached beside the fp32 graph; its logits
    within INT8_LOGIT_ATOL of fp32's on the same KV-cache steps, and the same greedy tokens where the fp32
    margins leave room for that error."""
    import numpy as np
    import onnx
    from transformers import AutoTokenizer

    from lts.cost.target import CPUTarget
    from lts.generate.onnx_kv import OnnxKVModel

    base = [tiny_model_dir, tiny_model_dir, PROMPT, *GREEDY, "--backend", "onnx", "--verbose", "--onnx-cache-dir",
            onnx_cache]
    rc, fp32, _ = cli(script, capsys, *base)
    assert rc == 0
    rc, int8, err = cli(script, capsys, *base, "--precision", "int8")
    assert rc == 0, err
    assert "int8 weights (dynamic quantization)" in err and "onnx built" in err, err  # quantized now
    folders = [p for p in onnx_cache.iterdir() if "-int8-" in p.name]
    assert len(folders) == 1, folders
    meta = json.loads((folders[0] / "meta.json").read_text())
    assert meta["precision"] == "int8" and meta["quantization"]["weight_type"] == "QInt8"
    fp32_folder = onnx_cache / folders[0].name.split("-int8-")[0]
    assert (folders[0] / "model.onnx").stat().st_size < (fp32_folder / "model.onnx").stat().st_size
    ops = {n.op_type for n in onnx.load(str(folders[0] / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"} and "Gemm" not in ops, ops
    # Weights in [-64, 64]: no x86 kernel saturates, on any CPU (8-bit weights pass the logit bound below with VNNI)
    weights = [onnx.numpy_helper.to_array(i) for i in onnx.load(str(folders[0] / "model.onnx")).graph.initializer
               if i.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64
    rc, again, err = cli(script, capsys, *base, "--precision", "int8")
    assert rc == 0 and "onnx cached" in err, err  # not quantized twice
    text = lambda out: out.split("\n")[0]  # noqa: E731 - the generated text is the first line
    assert text(again) == text(int8)  # greedy int8 decoding is deterministic

    # Both graphs on the same inputs: the prompt, then the fp32 greedy tokens one KV-cache step at a time.
    graphs = [OnnxKVModel(folder, CPUTarget(threads=1)) for folder in (fp32_folder, folders[0])]
    pasts = [g.empty_past(1) for g in graphs]
    feed = AutoTokenizer.from_pretrained(tiny_model_dir)(PROMPT, return_tensors="np")["input_ids"].astype(np.int64)
    worst, margin = 0.0, float("inf")
    for _ in range(int(GREEDY[-1])):
        (a, pasts[0]), (b, pasts[1]) = (g.forward(feed, p) for g, p in zip(graphs, pasts))
        worst = max(worst, float(np.abs(a - b).max()))
        top2 = np.sort(a[0])[-2:]
        margin = min(margin, float(top2[1] - top2[0]))
        feed = a.argmax(-1)[:, None].astype(np.int64)
    assert worst <= INT8_LOGIT_ATOL, f"int8 logits {worst:.4f} from fp32's"
    assert worst > 1e-3, f"int8 logits equal fp32's to {worst:.1e}: the weights were not quantized"
    # No step's argmax can flip when every fp32 margin exceeds twice the int8 error (this model and prompt:
    # smallest margin ~0.08 against an error of ~0.009), so the greedy texts must be equal.
    assert margin > 2 * worst, (margin, worst)
    assert text(int8) == text(fp32) and len(text(fp32)) > len(PROMPT)


def test_matmul_form_computes_what_the_gemm_graph_computes(tiny_model_dir, onnx_cache):
    """The rewrite int8 quantizes (Gemm -> MatMul + Add, tied head over a transposed copy) changes no logit."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from lts.cost.quantize import matmul_form

    folder = next(p for p in onnx_cache.iterdir() if p.is_dir() and "-int8-" not in p.name)
    proto = onnx.load(str(folder / "model.onnx"))
    rewritten = matmul_form(onnx.load(str(folder / "model.onnx")))
    assert "Gemm" not in {n.op_type for n in rewritten.graph.node}
    sessions = [ort.InferenceSession(p.SerializeToString()) for p in (proto, rewritten)]
    meta = json.loads((folder / "meta.json").read_text())
    feed = {"input_ids": np.array([[5, 17, 3, 42]], dtype=np.int64), "attention_mask": np.ones((1, 4), np.int64)}
    for name, (heads, dim) in zip(meta["inputs"][2:], [tuple(x) for x in meta["kv_layout"] for _ in (0, 1)]):
        feed[name] = np.zeros((1, heads, 0, dim), np.float32)
    a, b = (s.run(None, feed) for s in sessions)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
