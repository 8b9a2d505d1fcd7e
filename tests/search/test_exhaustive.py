"""--strategy exhaustive: every architecture of a space, once, and so the exact Pareto front."""

from __future__ import annotations

import numpy as np
from pymoo.optimize import minimize
from searchrun import DETERMINISTIC, rows, search, tiny_space

from lts.families.gpt2.space import SearchSpace
from lts.search.strategies import Exhaustive, LTSProblem

TINY = SearchSpace(n_layer=(1, 2, 3), n_embd=(32, 48, 64, 96), n_inner=(64, 96, 128), n_head=(2, 4), vocab_size=512,
                   n_positions=64)


def dominates(a: dict, b: dict) -> bool:
    """a dominates b: no fewer parameters (maximised), no larger file, better in one."""
    pa, pb = int(a["non_embedding_params"]), int(b["non_embedding_params"])
    fa, fb = float(a["onnx_file_mb"]), float(b["onnx_file_mb"])
    return pa >= pb and fa <= fb and (pa > pb or fa < fb)


class ByHand(LTSProblem):
    """Two objectives of the architecture alone, for pymoo's own loop: width x depth maximised, MLP x heads
    minimised; it notes every architecture it is asked to evaluate, and how many at a time."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space, ("width_x_depth", "inner_x_heads"))
        self.asked: list[str] = []
        self.batches: list[int] = []

    def _evaluate(self, X, out, *args, **kwargs):
        archs = [self.space.decode(x) for x in X]
        self.asked += [a.archid for a in archs]
        self.batches.append(len(archs))
        out["F"] = np.array([[-a.n_layer * a.n_embd, a.n_inner * a.n_head] for a in archs], dtype=float)
        out["G"] = np.full((len(archs), 1), -1.0)


def test_it_is_a_pymoo_algorithm_that_lists_each_architecture_once_in_batches():
    problem = ByHand(TINY)
    algorithm = Exhaustive(TINY, batch=20)
    assert len(algorithm.genes) == 72 and algorithm.batches == 4  # 3 x 4 x 3 x 2: every head count divides
    result = minimize(problem, algorithm, seed=1)  # pymoo's loop, its termination: nothing of the search's
    assert problem.batches == [20, 20, 20, 12] and len(set(problem.asked)) == 72
    assert set(problem.asked) == {c.archid for c in TINY.configs()}
    # pymoo's optimum is the exact front, by hand: what no other architecture beats in both objectives
    score = {c.archid: (c.n_layer * c.n_embd, c.n_inner * c.n_head) for c in TINY.configs()}
    beats = lambda a, b: a[0] >= b[0] and a[1] <= b[1] and a != b  # noqa: E731
    by_hand = {a for a, s in score.items() if not any(beats(t, s) for t in score.values())}
    assert {TINY.decode(x).archid for x in result.opt.get("X")} == by_hand
    # gene combinations that repair alike (n_embd 40 takes no 16 heads: 4 instead) are listed once
    odd = SearchSpace(n_layer=(1,), n_embd=(40, 48), n_inner=(64,), n_head=(4, 16), vocab_size=64, n_positions=16)
    assert len(Exhaustive(odd).genes) == len({c.archid for c in odd.configs()}) == 3


def test_per_layer_spaces_are_listed_when_small():
    space = SearchSpace(n_layer=(1, 2), n_embd=(32,), n_inner=(64, 96), n_head=(2, 4), per_layer=True,
                        vocab_size=64, n_positions=16)
    archs = {c.archid: c for c in space.configs()}
    assert len(archs) == 4 + 16  # one layer: 2 x 2 shapes; two layers: (2 x 2)^2
    two = {c.describe("n_inner") for c in archs.values() if c.n_layer == 2}
    assert two == {"64", "96", "64,96", "96,64"}  # equal layers are one integer


def test_the_exact_front_dominates_every_nsga2_front(tmp_path):
    exact = search(tmp_path, "--config", tiny_space(tmp_path), "--objectives", DETERMINISTIC, "--strategy",
                   "exhaustive", name="exact", check=True)
    assert "every architecture of the space" in (tmp_path / "models" / "README.md").read_text()
    everything = rows(tmp_path / "exact" / "evaluations.csv")
    assert len(everything) == 72 and len({r["archid"] for r in everything}) == 72
    front = [r for r in everything if r["front"] == "True"]
    brute = [r for r in everything if not any(dominates(o, r) for o in everything)]  # by hand, over all 72
    assert {r["archid"] for r in front} == {r["archid"] for r in brute}
    assert exact.returncode == 0
    for seed in (1, 2):
        search(tmp_path, "--config", tiny_space(tmp_path), "--objectives", DETERMINISTIC, "--generations", 2,
               "--population", 6, "--seed", seed, name=f"nsga{seed}", check=True)
        found = [r for r in rows(tmp_path / f"nsga{seed}" / "pareto.csv")]
        for r in found:  # on the exact front, or dominated by one of its members
            assert r["archid"] in {f["archid"] for f in front} or any(dominates(f, r) for f in front)


def test_it_resumes_without_measuring_again(tmp_path):
    args = ["--config", tiny_space(tmp_path), "--objectives", DETERMINISTIC, "--strategy", "exhaustive"]
    killed = search(tmp_path, *args, fault="evaluated:kill@30")
    assert killed.returncode != 0
    done = rows(tmp_path / "run" / "evaluations.csv") if (tmp_path / "run" / "evaluations.csv").exists() else []
    assert not done  # killed before the end: nothing summarised yet
    resumed = search(tmp_path, *args, "--resume", check=True)
    assert resumed.returncode == 0
    everything = rows(tmp_path / "run" / "evaluations.csv")
    assert len(everything) == 72 and len({r["archid"] for r in everything}) == 72


def test_what_it_cannot_do_is_one_line(tmp_path):
    measured = search(tmp_path, "--config", tiny_space(tmp_path), "--strategy", "exhaustive", "--seq-len", 32)
    assert measured.returncode == 2 and measured.stderr.count("\n") == 1, measured.stderr
    assert "onnx_memory_mb is measured per candidate" in measured.stderr
    assert "non_embedding_params, onnx_latency_s" in measured.stderr
    full = search(tmp_path, "--config", tiny_space(tmp_path), "--strategy", "exhaustive", "--objectives",
                  "non_embedding_params,onnx_latency_s", "--latency-mode", "full", "--seq-len", 32)
    assert full.returncode == 2 and "onnx_latency_s is measured per candidate (--latency-mode full)" in full.stderr
    paper = tmp_path / "paper.yaml"
    paper.write_text("space:\n  per_layer: true\n  n_layer: [1, 2, 3, 4, 5, 6]\n")
    huge = search(tmp_path, "--config", paper, "--strategy", "exhaustive", "--objectives", DETERMINISTIC)
    assert huge.returncode == 2 and "more than the 100,000 it lists" in huge.stderr, huge.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "run").exists()


def test_sizes_count_what_is_listed():
    for space in (TINY, SearchSpace(n_layer=(1, 2), n_embd=(32,), n_inner=(64, 96), n_head=(2, 4), per_layer=True,
                                    vocab_size=64, n_positions=16)):
        assert space.size == sum(1 for _ in space.configs())
    default = SearchSpace()
    assert sum(1 for _ in default.configs()) == default.size == 5880  # Archai's space, listed whole
