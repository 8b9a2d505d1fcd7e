"""Batches of prompts: left padding + attention mask give each prompt what it gets alone, on both backends.

The KV graph's mask is checked at the graph level first (logits and caches of a padded row equal
the row alone), then end to end through ``generate_text.py --prompts-file`` on a tiny GPT-2, and
for a family that goes through torch's exporter (GPT-Neo).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clirun import load_script, main_in_process

from lts.families.gpt2 import ArchConfig

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "generate_text.py"

# Different lengths (in tokens too), one that starts with a space, one blank line (skipped).
PROMPTS = ["The king said", "a", "", "Once upon a time there was a very long prompt that keeps going on",
           " to be or not", "What is the answer, and why is it so?"]


def _padded(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    return ids, mask


def test_kv_graph_padded_rows_compute_what_each_row_computes_alone(tmp_path):
    """Prefill of left-padded prompts, then decode steps: each row's logits (and its unpadded cache) as alone."""
    import onnxruntime as ort

    from lts.core.onnxgraph import kv_names, random_weights, write_onnx
    from lts.families.gpt2.graph import kv_graph_spec

    cfg = ArchConfig(2, 64, 96, 4, vocab_size=300, n_positions=48)
    path = tmp_path / "kv.onnx"
    write_onnx(kv_graph_spec(cfg), path, random_weights(seed=3, std=0.2))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    past_names = kv_names(cfg.n_layer)[0]
    hd = cfg.n_embd // cfg.n_head
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, cfg.vocab_size, size=n) for n in (7, 2, 5)]

    def run(ids: np.ndarray, mask: np.ndarray, steps: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        past = [np.zeros((len(ids), cfg.n_head, 0, hd), np.float32) for _ in past_names]
        logits_seen = []
        for _ in range(steps):
            logits, *past = sess.run(None, {"input_ids": ids, "attention_mask": mask, **dict(zip(past_names, past))})
            logits_seen.append(logits)
            ids = logits.argmax(-1)[:, None].astype(np.int64)
            mask = np.concatenate([mask, np.ones((len(ids), 1), np.int64)], axis=1)
        return logits_seen, past

    ids, mask = _padded(rows)
    batch_logits, batch_past = run(ids, mask, 6)
    for i, row in enumerate(rows):
        alone_logits, alone_past = run(row[None], np.ones((1, len(row)), np.int64), 6)
        for step, (b, a) in enumerate(zip(batch_logits, alone_logits)):
            np.testing.assert_allclose(b[i], a[0], atol=2e-5, rtol=1e-4, err_msg=f"row {i} step {step}")
        pad = ids.shape[1] - len(row)
        for b, a in zip(batch_past, alone_past):
            np.testing.assert_allclose(b[i, :, pad:], a[0], atol=2e-5, rtol=1e-4)
        assert np.isfinite(batch_past[0]).all()  # padding queries see no token: finite, never NaN


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory, tiny_tokenizer_dir, make_tiny_model) -> Path:
    """A tiny GPT-2 with weights 6x GPT-2's initial scale: attention and positions decide its tokens, so a
    padding token that leaked into attention or a shifted position changes the greedy output (at the
    initial scale a random model's argmax hardly depends on either)."""
    import torch
    from transformers import GPT2LMHeadModel

    out = make_tiny_model(tmp_path_factory.mktemp("sharp_model"), tiny_tokenizer_dir, n_layer=2, n_embd=64,
                          n_inner=128, n_head=4, seed=1)
    model = GPT2LMHeadModel.from_pretrained(out)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.mul_(6.0)
    model.save_pretrained(out)
    return out


def _settings(model_dir: Path, cache: Path, **kw):
    from lts.generate.decode import GenerateSettings

    common = dict(model=str(model_dir), tokenizer=str(model_dir), greedy=True, max_new_tokens=20, threads=1,
                  onnx_cache_dir=str(cache))
    return GenerateSettings(**{**common, **kw})


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_prompts_file_greedy_output_is_each_prompt_alone(tmp_path, sharp_model_dir, backend):
    from lts.generate.decode import run

    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    cache = tmp_path / "onnx"
    batched = run(_settings(sharp_model_dir, cache, prompts_file=str(prompts_file), batch_size=3, backend=backend))
    wanted = [p for p in PROMPTS if p.strip()]
    assert len(batched.texts) == len(wanted) and batched.batches == 2
    alone = [run(_settings(sharp_model_dir, cache, prompt=p, backend=backend)) for p in wanted]
    for i, (b, a) in enumerate(zip(batched.token_ids, alone)):
        assert b == a.token_ids[0], f"prompt {i} ({wanted[i]!r})"
        assert batched.texts[i] == a.texts[0]
    assert batched.generated_tokens == sum(len(a.token_ids[0]) - a.prompt_tokens for a in alone)
    assert batched.tokens_per_s > 0


def test_onnx_batch_matches_torch_batch_for_any_batch_size(tmp_path, sharp_model_dir):
    """Batch sizes 1, 2 and 16 (more than the prompts) give the same per-prompt output on both backends."""
    from lts.generate.decode import run

    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("\r\n".join(PROMPTS), encoding="utf-8")  # CRLF line ends, no final newline
    cache = tmp_path / "onnx"
    reference = run(_settings(sharp_model_dir, cache, prompts_file=str(prompts_file), backend="torch", batch_size=4))
    for size in (1, 2, 16):
        got = run(_settings(sharp_model_dir, cache, prompts_file=str(prompts_file), backend="onnx", batch_size=size))
        assert got.token_ids == reference.token_ids, size
        assert got.batches == -(-5 // size)


@pytest.mark.heavy
def test_exported_family_pads_like_generate(tmp_path):
    """GPT-Neo goes through torch's exporter: padded batch rows decode as transformers' generate does each alone."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    from lts.cost.target import CPUTarget
    from lts.generate.decode import left_pad
    from lts.generate.onnx_kv import OnnxKVModel, cached_kv_onnx

    torch.manual_seed(0)
    config = GPTNeoConfig(vocab_size=96, hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=64,
                          attention_types=[[["global", "local"], 1]], window_size=8, eos_token_id=95, bos_token_id=95)
    model = GPTNeoForCausalLM(config).eval()
    folder, _ = cached_kv_onnx(model, tmp_path)
    rows = [torch.tensor([[3, 14, 15, 9, 2, 6, 5]]), torch.tensor([[8, 1]]), torch.tensor([[40, 41, 42, 43]])]
    ids, mask = left_pad(rows, 95)
    got = OnnxKVModel(folder, CPUTarget(threads=1)).generate(ids, 10, lambda i, s: s, do_sample=False,
                                                             eos_token_id=None, pad_token_id=95, attention_mask=mask)
    for i, row in enumerate(rows):
        with torch.inference_mode():
            want = model.generate(row, attention_mask=torch.ones_like(row), max_new_tokens=10, do_sample=False,
                                  pad_token_id=95, eos_token_id=None)
        assert got[i, ids.shape[1] - row.shape[1]:].tolist() == want[0].tolist(), i


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    return main_in_process(load_script(SCRIPT), SCRIPT, capsys, *argv)


@pytest.mark.parametrize("case, content, flags, message", [
    ("empty file", "", [], "no prompts in"),
    ("blank lines only", "\n  \n\t\n", [], "no prompts in"),
    ("batch size 0", "hello\n", ["--batch-size", "0"], "batch_size (--batch-size) must be an integer >= 1"),
    ("batch size -3", "hello\n", ["--batch-size", "-3"], "batch_size (--batch-size) must be an integer >= 1"),
    ("too long", "hello\n\n" + "word " * 200 + "\n", [], "prompt 2 of"),
    ("not utf-8", b"\xff\xfe\x00bad", [], "not UTF-8 text"),
    ("with --stream", "hello\n", ["--stream"], "does not go with --prompts-file"),
    ("with -n 2", "hello\n", ["-n", "2", "--seed", "1"], "one sequence per prompt"),
])
def test_prompts_file_bad_input_is_one_line(tmp_path, capsys, tiny_model_dir, case, content, flags, message):
    path = tmp_path / "prompts.txt"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    rc, out, err = _cli(capsys, tiny_model_dir, tiny_model_dir, "--prompts-file", path, "--greedy",
                        "--max-new-tokens", "8", *flags)
    assert rc == 2 and out == "", (case, out)
    assert len(err.strip().splitlines()) == 1 and message in err, (case, err)


def test_prompts_file_and_prompt_are_exclusive(tmp_path, capsys, tiny_model_dir):
    path = tmp_path / "p.txt"
    path.write_text("hello\n")
    for argv, message in (((tiny_model_dir, tiny_model_dir, "hi", "--prompts-file", path), "not both"),
                          ((tiny_model_dir, tiny_model_dir), "the prompt is empty"),
                          ((tiny_model_dir, tiny_model_dir, "--prompts-file", tmp_path / "missing.txt"),
                           "cannot read prompts file")):
        rc, out, err = _cli(capsys, *argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_cli_prints_every_prompt_in_file_order(tmp_path, capsys, tiny_model_dir):
    path = tmp_path / "p.txt"
    path.write_text("The king said\n\nOnce upon a time\n")
    rc, out, err = _cli(capsys, tiny_model_dir, tiny_model_dir, "--prompts-file", path, "--greedy",
                        "--max-new-tokens", "6", "--batch-size", "2", "--verbose")
    assert rc == 0, err
    assert out.index("=== prompt 1/2 ===") < out.index("The king said") < out.index("=== prompt 2/2 ===")
    assert out.index("=== prompt 2/2 ===") < out.index("Once upon a time")
    assert "2 prompts" in err and "1 batches of up to 2" in err and "tokens/s" in err
