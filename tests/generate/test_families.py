"""generate_text.py and benchmark.py on the checkpoint shapes users load, one tiny random model per family.

Each family's model is built from transformers' own config class (2 layers, hidden 64) over the
tiny 512-token tokenizer. Several are padded the way their real checkpoints are: the output layer
has more rows than the tokenizer has tokens (opt-125m: 50,265 tokens, 50,272 rows, not a
multiple of 64; Pythia, Qwen2, Phi-2 and GPT-J by tens to hundreds of rows). One model keeps its
eos only in ``generation_config.json`` (not in config.json nor in the tokenizer) and none has a
pad token. Greedy tokens from ``lts.generate.run`` (torch and ONNX backends) must equal
transformers' ``model.generate(do_sample=False)``.

The padded rows of these models are zeroed (their logit is 0, below the best real token's), so
plain ``generate`` never picks them and token-for-token equality is a fair check; a separate test
keeps random padding rows, where ``generate`` does pick them and ``generate_text.py`` must not.

ONNX exports take ~4 s each on 2 cores: every family is exported in the default suite (CI), and the fast tier
(``pytest --fast``) keeps the search's own GPT-2 graph alone (the exports are marked ``heavy``).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clirun import load_script, main_in_process

REPO = Path(__file__).resolve().parents[2]
PROMPT = "The function returns"
NEW = 16  # new tokens per generation
TOKENS = 512  # the tiny tokenizer's size (tests/conftest.py)

_H = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=128)
_GQA = dict(_H, num_attention_heads=4, num_key_value_heads=1, intermediate_size=128)  # grouped KV heads
# family -> (transformers config class, its arguments); vocab_size > TOKENS = a padded embedding
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2": ("GPT2Config", dict(vocab_size=TOKENS, n_layer=2, n_embd=64, n_inner=128, n_head=2, n_positions=128)),
    "opt": ("OPTConfig", dict(_H, vocab_size=TOKENS + 7, ffn_dim=128, word_embed_proj_dim=64)),  # like opt-125m
    "gpt_neo": ("GPTNeoConfig", dict(vocab_size=TOKENS, hidden_size=64, num_layers=2, num_heads=2,
                                     max_position_embeddings=128, attention_types=[[["global", "local"], 1]],
                                     window_size=8)),  # the local layer's window is shorter than the text
    "gpt_neox": ("GPTNeoXConfig", dict(_H, vocab_size=576, intermediate_size=128, rotary_pct=0.25)),  # Pythia
    "llama": ("LlamaConfig", dict(_GQA, vocab_size=TOKENS)),
    "mistral": ("MistralConfig", dict(_GQA, vocab_size=TOKENS, sliding_window=16)),  # window < prompt + new
    "qwen2": ("Qwen2Config", dict(_GQA, vocab_size=640)),
    "phi": ("PhiConfig", dict(_H, vocab_size=600, intermediate_size=128, partial_rotary_factor=0.5)),  # head bias
    "falcon": ("FalconConfig", dict(vocab_size=TOKENS, hidden_size=64, num_hidden_layers=2, num_attention_heads=2)),
    "bloom": ("BloomConfig", dict(vocab_size=TOKENS, hidden_size=64, n_layer=2, n_head=2)),  # ALiBi
    "gptj": ("GPTJConfig", dict(vocab_size=560, n_embd=64, n_layer=2, n_head=2, rotary_dim=16, n_positions=128)),
}


def build(out: Path, tokenizer_dir: Path, family: str, *, zero_padding: bool = True, seed: int = 0,
          **overrides: Any) -> Path:
    """Save a random tiny `family` model with the tiny tokenizer beside it; padding rows zeroed unless told."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    class_name, kwargs = FAMILIES[family]
    config = getattr(transformers, class_name)(**{**kwargs, "bos_token_id": tok.eos_token_id,
                                                  "eos_token_id": tok.eos_token_id, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    if zero_padding:
        head = model.get_output_embeddings()
        with torch.no_grad():
            head.weight[len(tok):] = 0
            if getattr(head, "bias", None) is not None:
                head.bias[len(tok):] = 0
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def reference(folder: Path, prompt: str = PROMPT, new: int = NEW, **kwargs: Any) -> list[int]:
    """transformers' own greedy decoding of the saved folder (its generation_config.json applies)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False, **kwargs)
    return out[0].tolist()


def generate(folder: Path, backend: str = "torch", cache: Path | None = None, **kwargs: Any) -> Any:
    from lts.generate.decode import GenerateSettings, run

    settings = dict(model=str(folder), tokenizer=str(folder), prompt=PROMPT, greedy=True, max_new_tokens=NEW,
                    threads=1, backend=backend, onnx_cache_dir=None if cache is None else str(cache))
    return run(GenerateSettings(**{**settings, **kwargs}))


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_tokenizer_dir) -> dict[str, Path]:
    """Every family's folder (~0.1 s each), plus each one's transformers reference tokens (cached here)."""
    root = tmp_path_factory.mktemp("families")
    return {family: build(root / family, tiny_tokenizer_dir, family) for family in FAMILIES}


@pytest.fixture(scope="module")
def references(models) -> dict[str, list[int]]:
    return {family: reference(folder) for family, folder in models.items()}


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def eos_only(tmp_path_factory, tiny_tokenizer_dir) -> tuple[Path, int]:
    """A Llama whose eos is only in generation_config.json (a list, as Llama 3 and Qwen2 ship it): not in
    config.json, not in the tokenizer; no pad token anywhere. Returns (folder, the eos id greedy decoding meets).

    The stop id is the 6th new token of the model's own greedy text (one not seen before it), so decoding
    that honours the generation config stops there, and decoding that ignores it runs on.
    """
    import json

    from transformers import AutoTokenizer, GenerationConfig

    folder = build(tmp_path_factory.mktemp("eos_only") / "llama", tiny_tokenizer_dir, "llama", seed=1,
                   bos_token_id=None, eos_token_id=None, pad_token_id=None)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.eos_token = tok.bos_token = tok.unk_token = None
    tok.save_pretrained(folder)
    prompt_len = len(tok(PROMPT)["input_ids"])
    free = reference(folder)[prompt_len:]
    stop = next(t for i, t in enumerate(free) if i >= 5 and t not in free[:i])
    never = next(t for t in range(TOKENS) if t not in free)
    GenerationConfig(eos_token_id=[never, stop]).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert all(config.get(k) is None for k in ("eos_token_id", "bos_token_id", "pad_token_id")), config
    again = AutoTokenizer.from_pretrained(folder)
    assert again.eos_token_id is None and again.pad_token_id is None and len(again) == TOKENS
    return folder, stop


def _cli(capsys, *argv: Any) -> tuple[int, str, str]:
    """generate_text.py's main through run_cli in this process (the script's code path, without start-up)."""
    return main_in_process(load_script(REPO / "generate_text.py"), REPO / "generate_text.py", capsys, *argv)


# ---------------------------------------------------------------------------------------------
# Every family: greedy tokens equal transformers' generate


@pytest.mark.parametrize("rows", [TOKENS, TOKENS + 7, 576, 4096, 50_272])
def test_any_embedding_at_least_the_tokenizer_is_accepted(rows):
    from lts.generate.decode import check_vocab

    check_vocab(TOKENS, rows, "tok", "model")  # no exception: padding of any size or multiple


def test_families_are_the_shapes_users_load(models):
    """The padded families really are padded (more output rows than tokens), opt like opt-125m."""
    from transformers import AutoConfig

    vocab = {f: AutoConfig.from_pretrained(folder).vocab_size for f, folder in models.items()}
    assert vocab["opt"] == TOKENS + 7 and vocab["opt"] % 64 and vocab["opt"] % 8 == 7
    assert {f for f, v in vocab.items() if v > TOKENS} == {"opt", "gpt_neox", "qwen2", "phi", "gptj"}


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_greedy_tokens_equal_transformers(models, references, family):
    want = references[family]
    assert max(want) < TOKENS, "zeroed padding rows never win, so plain generate is a fair reference"
    got = generate(models[family])
    assert got.token_ids == [want]
    assert got.new_tokens == NEW


def _onnx_params() -> list[Any]:
    return [pytest.param(f, marks=() if f == "gpt2" else pytest.mark.heavy) for f in FAMILIES]


@pytest.mark.parametrize("family", _onnx_params())
def test_onnx_greedy_tokens_equal_transformers(models, references, onnx_cache, family):
    got = generate(models[family], "onnx", onnx_cache)
    # the families LTS searches are served by their own graphs
    assert got.onnx_builder == ("lts" if family in ("gpt2", "llama") else "torch.onnx.export")
    assert got.token_ids == [references[family]]


def test_cli_runs_the_padded_opt_on_both_backends(capsys, models, references, onnx_cache):
    """The issue's case through the script: an embedding 7 rows over the tokenizer, not a multiple of 64."""
    from transformers import AutoTokenizer

    want = AutoTokenizer.from_pretrained(models["opt"]).decode(references["opt"], skip_special_tokens=True)
    for backend in ("torch", "onnx"):
        rc, out, err = _cli(capsys, models["opt"], models["opt"], PROMPT, "--greedy", "--max-new-tokens", NEW,
                            "--threads", 1, "--backend", backend, "--onnx-cache-dir", onnx_cache)
        assert rc == 0, err
        assert out == want + "\n" and err == ""


PADDING = 600  # rows over the tokenizer in `random_padding`


@pytest.fixture(scope="module")
def random_padding(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """An OPT whose 600 padding rows are left random: plain generate picks them (checked where used)."""
    return build(tmp_path_factory.mktemp("random_padding") / "opt", tiny_tokenizer_dir, "opt", zero_padding=False,
                 seed=3, vocab_size=TOKENS + PADDING)


def test_random_padding_rows_are_never_emitted(random_padding):
    """Padding rows left random: plain generate emits ids the tokenizer cannot decode; generate_text.py does
    what transformers does when told to suppress them (``suppress_tokens``), and nothing else."""
    plain = reference(random_padding)
    assert max(plain) >= TOKENS, "this model's padding rows win under plain generate (seed 3)"
    want = reference(random_padding, suppress_tokens=list(range(TOKENS, TOKENS + PADDING)))
    assert generate(random_padding).token_ids == [want] and max(want) < TOKENS


# ---------------------------------------------------------------------------------------------
# eos only in generation_config.json, no pad token


@pytest.mark.parametrize("backend", ["torch", pytest.param("onnx", marks=pytest.mark.heavy)])
def test_eos_only_in_generation_config_stops_like_generate(eos_only, onnx_cache, backend):
    folder, stop = eos_only
    want = reference(folder)
    assert want[-1] == stop and stop not in want[:-1], "generate stops at the generation config's eos"
    got = generate(folder, backend, onnx_cache)
    assert got.token_ids == [want]
    assert got.new_tokens < NEW  # stopped at the generation config's eos


def test_eos_only_in_generation_config_batches(eos_only, tmp_path):
    """--prompts-file left-pads with no pad token anywhere: each prompt's tokens as generated alone."""
    folder, _ = eos_only
    prompts = [PROMPT, "x", "Return the value of a long expression"]
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    batched = generate(folder, prompt="", prompts_file=str(path), batch_size=3)
    assert batched.token_ids == [reference(folder, p) for p in prompts]


# ---------------------------------------------------------------------------------------------
# Refusals keep their contract: one line on stderr, exit 2, no traceback, nothing written


def test_an_embedding_smaller_than_the_tokenizer_is_refused(capsys, tmp_path, tiny_tokenizer_dir):
    folder = build(tmp_path / "opt_small", tiny_tokenizer_dir, "opt", vocab_size=TOKENS - 12)
    cache = tmp_path / "cache"
    rc, out, err = _cli(capsys, folder, folder, PROMPT, "--greedy", "--backend", "onnx", "--onnx-cache-dir", cache)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"has {TOKENS} tokens" in err and f"only produce {TOKENS - 12}" in err, err
    assert not cache.exists()


def test_a_family_whose_export_fails_is_one_line(capsys, monkeypatch, models, tmp_path):
    """Where torch's exporter cannot handle a family, --backend onnx says so in one line and leaves no files."""
    import lts.generate.onnx_kv as onnx_kv

    def broken(model: Any, out_dir: Any) -> None:
        (Path(out_dir) / "model.onnx").write_bytes(b"half a graph")
        raise RuntimeError("Unsupported: an op the exporter does not know\nand more lines")

    monkeypatch.setattr(onnx_kv, "export_kv_onnx", broken)
    cache = tmp_path / "cache"
    rc, out, err = _cli(capsys, models["bloom"], models["bloom"], PROMPT, "--greedy", "--backend", "onnx",
                        "--onnx-cache-dir", cache)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "ONNX export of BloomForCausalLM failed" in err and "use --backend torch" in err, err
    assert not cache.exists() or not any(cache.iterdir())


# ---------------------------------------------------------------------------------------------
# benchmark.py


@pytest.mark.heavy
def test_benchmark_runs_the_padded_and_the_eos_only_models(models, eos_only, random_padding, tmp_path,
                                                          tiny_tokenizer_dir):
    """benchmark.py --greedy on the padded OPT, the eos-only Llama and an OPT whose padding rows would win:
    every row ok; the texts are transformers' greedy ones (6 tokens forced: benchmark.py sets min_new_tokens),
    padding ids suppressed as generate_text.py does. An embedding smaller than its tokenizer is a failed row."""
    from transformers import AutoTokenizer

    out = tmp_path / "bench"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    folders = [models["opt"], eos_only[0], random_padding]
    small = build(tmp_path / "opt_small", tiny_tokenizer_dir, "opt", vocab_size=TOKENS - 12)
    argv = [*folders, small, "--prompt", PROMPT, "--max-new-tokens", 6, "--repeats", 1, "--threads", 1, "--greedy",
            "--out", out, "--no-progress"]
    proc = subprocess.run([sys.executable, "benchmark.py", *map(str, argv)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["Model"] for r in rows] == [str(f) for f in (*folders, small)]
    assert rows.pop()["Status"].startswith("failed: load: LTSError: tokenizer"), "smaller embedding"
    assert "1 of 4 model(s) failed" in proc.stdout, proc.stdout
    for r, folder in zip(rows, folders):
        assert r["Status"] == "ok", r["Status"]
        assert int(r["New Tokens"]) == 6
        tok = AutoTokenizer.from_pretrained(folder)
        rows_ = TOKENS + PADDING if folder == random_padding else TOKENS + 7 if folder == models["opt"] else TOKENS
        want = reference(folder, new=6, min_new_tokens=6, suppress_tokens=list(range(TOKENS, rows_)) or None)
        prompt_len = len(tok(PROMPT)["input_ids"])
        assert r["Generated Text"] == tok.decode(want[prompt_len:], skip_special_tokens=True)
