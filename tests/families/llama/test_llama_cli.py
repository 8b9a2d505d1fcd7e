"""The Llama family end to end, as users run it: a search writes stock Llama configs; a front member trains (tied
and untied), generates the same greedy tokens on torch and ONNX, exports, and runs from the export without LTS."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from clirun import run_cli
from searchrun import rows, search

REPO = Path(__file__).resolve().parents[3]
TINY_LLAMA = """
space:
  family: llama
  num_hidden_layers: [1, 2]
  hidden_size: [32, 64]
  ffn_ratio: [2.0, 3.0]
  num_key_value_heads: [1, 2]
  tie_word_embeddings: [true, false]
  head_dim: 16
  vocab_size: 512
  max_position_embeddings: 64
"""


@pytest.mark.heavy
def test_a_llama_search_writes_stock_llama_configs(tmp_path):
    from transformers import AutoConfig

    (tmp_path / "llama.yaml").write_text(TINY_LLAMA)
    r = search(tmp_path, "--config", tmp_path / "llama.yaml", "--objectives",
               "non_embedding_params,onnx_decode_latency_s,onnx_generation_memory_mb", "--population", "4",
               "--generations", "1", "--context", "16", "--seq-len", "16", check=True)
    evaluated = rows(tmp_path / "run" / "evaluations.csv")
    assert len(evaluated) == 4 and all(row["archid"].startswith("llama_") and row["status"] == "ok"
                                       for row in evaluated)
    assert {"num_key_value_heads", "tie_word_embeddings"} <= set(evaluated[0]), r.stdout
    members = [p for p in (tmp_path / "models").iterdir() if p.is_dir()]
    assert members
    for member in members:
        data = json.loads((member / "config.json").read_text())
        assert data["model_type"] == "llama" and "family" not in data  # a stock config: no LTS key in it
        assert type(AutoConfig.from_pretrained(member)).__name__ == "LlamaConfig"


@pytest.mark.heavy
@pytest.mark.parametrize("tied", [True, False])
def test_a_llama_trains_generates_alike_on_both_backends_and_runs_from_its_export(tied, tmp_path, tiny_text,
                                                                                 tiny_tokenizer_dir):
    from transformers import AutoModelForCausalLM

    from lts.families.llama import LlamaArch

    arch = LlamaArch(hidden_size=64, num_hidden_layers=2, intermediate_size=160, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, tie_word_embeddings=tied, vocab_size=512,
                     max_position_embeddings=128)
    arch.to_hf_config().save_pretrained(tmp_path / "arch")
    (tmp_path / "a.txt").write_text(tiny_text[:60_000], encoding="utf-8")
    out = tmp_path / "trained"
    r = run_cli(["train.py", tmp_path / "arch", "--data", tmp_path / "a.txt", "--tokenizer", tiny_tokenizer_dir,
                 "--out", out, "--max-steps", "30", "--batch-size", "4", "--seq-len", "32", "--eval-every", "15",
                 "--eval-windows", "8", "--threads", "1", "--no-progress"], cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    shared = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert shared is tied and model.config.tie_word_embeddings is tied
    assert sum(p.numel() for p in model.parameters()) == arch.total_params()

    texts = {}
    for backend in ("torch", "onnx"):
        r = run_cli(["generate_text.py", out, out, "Once upon a time", "--greedy", "--max-new-tokens", "12",
                     "--backend", backend, "--threads", "1", "--onnx-cache-dir", tmp_path / "onnx"], cwd=REPO,
                    timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        texts[backend] = r.stdout
    assert texts["onnx"] == texts["torch"] and texts["torch"].strip()

    shipped = tmp_path / "shipped"
    r = run_cli(["-m", "lts", "export", out, "--out", shipped, "--onnx-cache-dir", tmp_path / "onnx"],
                cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    sys.path.insert(0, str(REPO / "tests" / "generate"))
    try:
        from test_export import run_readme, torch_greedy
    finally:
        sys.path.pop(0)
    from tokenizers import Tokenizer

    ids = torch_greedy(out, "The future of AI", 20)
    assert run_readme(shipped) == Tokenizer.from_file(str(shipped / "tokenizer.json")).decode(ids) + "\n"  # print()
