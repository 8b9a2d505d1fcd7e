"""The LTS paper's per-layer space end to end from the command lines: search (measured, resumed), train a front
member, generate with it on torch and on the search's own ONNX graph (fp32 and int8), compare it."""

from __future__ import annotations

import json
import os

import pytest
from clirun import run_cli
from searchrun import REPO, rows, search

pytestmark = pytest.mark.heavy

PER_LAYER_SPACE = """
space:
  per_layer: true
  n_layer: [1, 2, 3]
  n_embd: [32, 64]
  n_inner: [32, 64, 96]
  n_head: [2, 4]
  vocab_size: 256
  n_positions: 64
"""


def test_a_per_layer_search_trains_and_generates(tmp_path):
    (tmp_path / "paper.yaml").write_text(PER_LAYER_SPACE)
    common = ("--config", "paper.yaml", "--population", 6, "--seq-len", 16, "--context", 16,
              "--objectives", "non_embedding_params,onnx_latency_s,onnx_decode_latency_s")
    search(tmp_path, *common, "--generations", 1, check=True)
    resumed = search(tmp_path, *common, "--generations", 2, "--resume", check=True)  # the checkpoint reloads
    assert "evaluated 12 architectures" in resumed.stdout, resumed.stdout
    evaluated = rows(tmp_path / "run" / "evaluations.csv")
    assert len(evaluated) == 12 and all(r["status"] == "ok" for r in evaluated)
    assert len(evaluated[0]["genes"].split()) == 2 + 2 * 3  # n_layer, n_embd, then n_inner_i and n_head_i
    per_layer = [r for r in evaluated if r["n_inner"].startswith("[") or r["n_head"].startswith("[")]
    assert per_layer, "no candidate had layers of different shapes"
    members = [p for p in (tmp_path / "models").iterdir() if (p / "config.json").is_file()]
    configs = {p.name: json.loads((p / "config.json").read_text()) for p in members}
    kinds = {c["model_type"] for c in configs.values()}
    assert kinds <= {"gpt2", "lts_gpt2"}
    for name, c in configs.items():
        lists = isinstance(c["n_inner"], list) or isinstance(c["n_head"], list)
        assert (c["model_type"] == "lts_gpt2") == lists, name
    gallery = (tmp_path / "run" / "gallery.md").read_text()
    assert "[" not in gallery.split("| n_head |")[1]  # a per-layer field reads 64,96x2 (runs collapsed)

    # Train a per-layer candidate (as a user writes one: a plain gpt2 config.json with lists), then generate.
    row = per_layer[0]
    hand = tmp_path / "hand"
    hand.mkdir()
    (hand / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "n_layer": int(row["n_layer"]), "n_embd": int(row["n_embd"]),
        "n_inner": json.loads(row["n_inner"]), "n_head": json.loads(row["n_head"]), "vocab_size": 256,
        "n_positions": 64}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    trained = tmp_path / "trained"
    r = run_cli([str(REPO / "train.py"), str(hand), "--out", str(trained), "--max-steps", "6",
                 "--batch-size", "2", "--seq-len", "32", "--eval-every", "3", "--save-every", "3",
                 "--tokenizer-vocab", "300", "--corpus", "pydoc", "--no-progress"], cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = json.loads((trained / "config.json").read_text())
    assert saved["model_type"] == "lts_gpt2" and saved["n_layer"] == int(row["n_layer"])
    texts = {}
    for backend, precision in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")):
        g = run_cli([str(REPO / "generate_text.py"), str(trained), str(trained), "def main(", "--greedy",
                     "--max-new-tokens", "12", "--backend", backend, "--precision", precision], cwd=tmp_path, env=env,
                    timeout=600)
        assert g.returncode == 0, g.stderr[-3000:]
        texts[backend, precision] = g.stdout
    assert texts["torch", "fp32"] == texts["onnx", "fp32"]  # the search's own graph, greedy: the same tokens
    assert texts["onnx", "int8"].startswith("def main(")
    (tmp_path / "prompts.txt").write_text("def main(\nimport os\nclass A:\n")
    batched = {}
    for backend in ("torch", "onnx"):  # batches, left-padded: each prompt gets what it gets alone
        g = run_cli([str(REPO / "generate_text.py"), str(trained), str(trained), "--prompts-file", "prompts.txt",
                     "--batch-size", "2", "--greedy", "--max-new-tokens", "8", "--backend", backend], cwd=tmp_path,
                    env=env, timeout=600)
        assert g.returncode == 0, g.stderr[-3000:]
        batched[backend] = g.stdout
    assert batched["torch"] == batched["onnx"] and batched["onnx"].count("=== prompt") == 3
    b = run_cli([str(REPO / "benchmark.py"), str(trained), "--out", str(tmp_path / "bench"), "--max-new-tokens", "4",
                 "--no-charts", "--no-progress"], cwd=tmp_path, env=env, timeout=600)
    assert b.returncode == 0, b.stderr[-3000:]
    assert "ok" in (tmp_path / "bench" / "results.csv").read_text()


def test_a_budget_holds_in_a_per_layer_search(tmp_path):
    """Budgets are per-layer-blind: every front member of a (deterministic) per-layer search meets its budget."""
    (tmp_path / "paper.yaml").write_text(PER_LAYER_SPACE)
    search(tmp_path, "--config", "paper.yaml", "--generations", 2, "--population", 8, "--objectives",
           "non_embedding_params,onnx_file_mb", "--constraint", "non_embedding_params<=40000", check=True)
    front = rows(tmp_path / "run" / "pareto.csv")
    assert front and all(int(r["non_embedding_params"]) <= 40000 for r in front)
    assert any(r["n_inner"].startswith("[") or r["n_head"].startswith("[") for r in rows(tmp_path / "run" /
                                                                                          "evaluations.csv"))
