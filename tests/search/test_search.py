"""The search end to end through the CLI, plus resume/determinism and pymoo wiring."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import searchrun
from searchrun import DETERMINISTIC, REPO, TINY_SPACE, rows


def search(tmp: Path, *args, check=True, **kwargs):
    return searchrun.search(tmp, *args, check=check, **kwargs)


def front_ids(run: Path) -> list[str]:
    return sorted(r["archid"] for r in rows(run / "pareto.csv"))


@pytest.mark.heavy
def test_short_measured_search_writes_every_output(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    r = search(tmp_path, "--config", tmp_path / "tiny.yaml", "--generations", 2, "--population", 6,
               "--seq-len", 32, "--threads", 1)
    assert "Pareto front" in r.stdout and "evaluations.csv" in r.stdout

    evals = rows(tmp_path / "run" / "evaluations.csv")
    assert 10 <= len(evals) <= 12  # pymoo may fail to find 6 new offspring in a 72-config space
    assert len({e["archid"] for e in evals}) == len(evals)  # no duplicate evaluated twice
    assert {e["generation"] for e in evals} == {"0", "1"}
    for col in ("archid", "generation", "genes", "n_layer", "n_embd", "n_inner", "n_head", "non_embedding_params",
                "onnx_latency_s", "onnx_latency_cv", "onnx_memory_mb", "onnx_file_mb", "eval_seconds", "status"):
        assert col in evals[0], col
    assert all(e["status"] == "ok" and float(e["onnx_latency_s"]) > 0 and float(e["onnx_memory_mb"]) > 0
               for e in evals)

    front = rows(tmp_path / "run" / "pareto.csv")
    folders = sorted(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    assert sorted(p.name for p in folders) == sorted(f["archid"] for f in front) and folders

    from transformers import AutoConfig, AutoModelForCausalLM

    from lts.families import load_arch

    for folder in folders:
        assert load_arch(folder).archid == folder.name  # the name is the id of the contents
        cfg = AutoConfig.from_pretrained(folder)
        model = AutoModelForCausalLM.from_config(cfg)
        assert model.config.n_inner == cfg.n_inner and model.config.n_embd == cfg.n_embd
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["archid"] == folder.name and metrics["status"] == "ok"
        assert metrics["conditions"]["seq_len"] == 32 and metrics["onnx_latency_s"] > 0
    for plot in ("pareto_non_embedding_params_vs_onnx_latency.png", "pareto_non_embedding_params_vs_onnx_memory.png"):
        data = (tmp_path / "assets" / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    gallery = (tmp_path / "run" / "gallery.md").read_text()
    assert all(f["archid"] in gallery for f in front)


@pytest.mark.heavy
def test_same_seed_same_front_and_different_seed_differs(tmp_path):
    args = ("--objectives", DETERMINISTIC, "--generations", 2, "--population", 8)
    search(tmp_path, *args, "--seed", 7, name="a")
    search(tmp_path, *args, "--seed", 7, "--cache", tmp_path / "other.sqlite", name="b")
    search(tmp_path, *args, "--seed", 8, "--cache", tmp_path / "third.sqlite", name="c")
    assert front_ids(tmp_path / "a") == front_ids(tmp_path / "b")
    assert [r["archid"] for r in rows(tmp_path / "a" / "evaluations.csv")] == \
        [r["archid"] for r in rows(tmp_path / "b" / "evaluations.csv")]
    assert [r["archid"] for r in rows(tmp_path / "a" / "evaluations.csv")] != \
        [r["archid"] for r in rows(tmp_path / "c" / "evaluations.csv")]


@pytest.mark.heavy
def test_resume_picks_latest_run_and_can_extend_generations(tmp_path):
    args = ("--objectives", DETERMINISTIC, "--population", 6)
    search(tmp_path, *args, "--generations", 2, name="runs/first")
    r = subprocess.run([sys.executable, str(REPO / "search.py"), "--resume", "--runs-dir", "runs", "--generations", "3",
                        "--out", "models", "--assets-dir", "assets", "--cache", "cache.sqlite", "--no-progress"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(rows(tmp_path / "runs" / "first" / "evaluations.csv")) == 18


def test_search_uses_pymoo_selection_and_survival():
    from pymoo.operators.selection.tournament import TournamentSelection
    from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

    from lts.families.gpt2.space import SearchSpace
    from lts.search.settings import SearchSettings
    from lts.search.strategies import make_algorithm

    algo = make_algorithm(SearchSpace(), SearchSettings())
    assert isinstance(algo.survival, RankAndCrowding)
    assert isinstance(algo.mating.selection, TournamentSelection)


def test_hypervolume_equals_the_area_computed_by_hand():
    """Three members and one dominated point, params maximised: the normalised area up to (1.1, 1.1) by hand."""
    from lts.cost.evaluator import EvalResult
    from lts.families.gpt2 import ArchConfig
    from lts.search.fronts import hypervolume, pareto_front

    def result(params, latency):
        c = ArchConfig(1, 32, 64, 2, vocab_size=64 + params, n_positions=64)
        return EvalResult(c.archid, c, {"non_embedding_params": params, "onnx_latency_s": latency})

    objs = ("non_embedding_params", "onnx_latency_s")
    everything = [result(10, 1.0), result(20, 2.0), result(30, 3.0), result(15, 2.5)]
    front = pareto_front(everything, objs)
    assert len(front) == 3
    # Minimised and scaled to [0, 1] over everything: (-params + 30) / 20, (latency - 1) / 2 ->
    # (1, 0), (0.5, 0.5), (0, 1). The area they dominate up to (1.1, 1.1), swept left to right:
    # x in [0, 0.5): 1.1 - 1.0; x in [0.5, 1.0): 1.1 - 0.5; x in [1.0, 1.1): 1.1 - 0.
    by_hand = 0.5 * 0.1 + 0.5 * 0.6 + 0.1 * 1.1
    assert hypervolume(front, everything, objs) == pytest.approx(by_hand)
    assert hypervolume(front[:1], everything, objs) < by_hand


def test_pareto_front_is_non_dominated_and_complete():
    import numpy as np

    from lts.cost.evaluator import EvalResult
    from lts.families.gpt2.space import SearchSpace
    from lts.search.fronts import pareto_front

    rng = np.random.default_rng(0)
    space = SearchSpace()
    results = []
    for c in {space.sample(rng) for _ in range(80)}:
        results.append(EvalResult(archid=c.archid, config=c, values={
            "non_embedding_params": int(rng.integers(1, 100)), "onnx_latency_s": float(rng.random()),
            "onnx_memory_mb": 1.0}))
    objs = ("non_embedding_params", "onnx_latency_s")
    front = {r.archid for r in pareto_front(results, objs)}

    def dominates(a, b):
        return (a.non_embedding_params >= b.non_embedding_params and a.onnx_latency_s <= b.onnx_latency_s and
                (a.non_embedding_params > b.non_embedding_params or a.onnx_latency_s < b.onnx_latency_s))

    for r in results:
        assert (r.archid in front) == (not any(dominates(o, r) for o in results))


@pytest.mark.parametrize("args", [
    ["--generations", "0"], ["--generations", "-3"], ["--population", "1"], ["--generations", "two"],
    ["--objectives", "accuracy,onnx_latency_s"], ["--objectives", "onnx_latency_s"], ["--seq-len", "0"],
    ["--seq-len", "5000"], ["--resume"], ["--config", "missing.yaml"], ["--config", "bad.yaml"],
    ["--config", "unknown_key.yaml"], ["--config", "bad_space.yaml"], ["--out", "afile/models"],
    ["--engine", "spark"], ["--workers", "0"],
])
@pytest.mark.heavy
def test_bad_input_is_one_line_and_exit_2(tmp_path, args):
    (tmp_path / "bad.yaml").write_text("generations: [1,\n")
    (tmp_path / "unknown_key.yaml").write_text("generation: 3\n")
    (tmp_path / "bad_space.yaml").write_text("space:\n  n_embd: [5, 7]\n  n_head: [2, 4]\n")
    (tmp_path / "afile").write_text("not a folder")
    r = subprocess.run([sys.executable, str(REPO / "search.py"), "--runs-dir", "runs", "--cache", "c.sqlite",
                        "--assets-dir", "assets", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "runs").exists()
