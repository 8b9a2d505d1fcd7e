"""--strategy exhaustive: every architecture of a space, once, and so the exact Pareto front."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymoo.optimize import minimize
from searchrun import DETERMINISTIC, rows, search, tiny_space

from lts.cost.evaluator import Evaluator
from lts.families.gpt2.space import SearchSpace
from lts.search.checkpoint import RunState, read_run_state, save_checkpoint
from lts.search.executors import LocalExecutor
from lts.search.job import SearchJob
from lts.search.loop import run_search
from lts.search.strategies import Exhaustive, LTSProblem

TINY = SearchSpace(n_layer=(1, 2, 3), n_embd=(32, 48, 64, 96), n_inner=(64, 96, 128), n_head=(2, 4), vocab_size=512,
                   n_positions=64)
OBJECTIVES = ("non_embedding_params", "onnx_file_mb")


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
    figures = {r["archid"]: [r[o] for o in OBJECTIVES] for r in everything}
    for seed in (1, 2):
        search(tmp_path, "--config", tiny_space(tmp_path), "--objectives", DETERMINISTIC, "--generations", 2,
               "--population", 6, "--seed", seed, name=f"nsga{seed}", check=True)
        tried = rows(tmp_path / f"nsga{seed}" / "evaluations.csv")
        found = {r["archid"] for r in rows(tmp_path / f"nsga{seed}" / "pareto.csv")}
        # NSGA-II's front: what none of its own candidates dominates (by hand), with the exact run's figures
        assert found == {r["archid"] for r in tried if not any(dominates(o, r) for o in tried)}
        assert all([r[o] for o in OBJECTIVES] == figures[r["archid"]] for r in tried)


def test_it_resumes_without_evaluating_a_finished_candidate_again(tmp_path):
    """SIGKILLed mid-batch, resumed with an empty cache: the run's record alone serves what was finished."""
    args = ["--config", tiny_space(tmp_path), "--objectives", DETERMINISTIC, "--strategy", "exhaustive"]
    killed = search(tmp_path, *args, fault="evaluated:kill@30")
    assert killed.returncode != 0
    assert not (tmp_path / "run" / "evaluations.csv").exists()  # killed before the end: nothing summarised yet
    before = (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()
    assert len(before) == 30
    search(tmp_path, *args, "--resume", cache="empty.sqlite", check=True)
    after = (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()
    assert after[:30] == before  # the record of finished work is kept as it was
    ids = [json.loads(line)["archid"] for line in after]
    assert len(ids) == len(set(ids)) == 72  # each candidate evaluated (and recorded) once over both runs
    assert not any(json.loads(line)["cached"] for line in after[30:])  # the rest: evaluated by the resumed run
    assert sorted(r["archid"] for r in rows(tmp_path / "run" / "evaluations.csv")) == sorted(ids)


class Killed(Exception):
    pass


class Counting(LocalExecutor):
    """This machine's executor, noting every candidate it evaluates; `stop_after`: it stops there, as a run killed
    then would."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__(1)
        self.evaluated: list[str] = []
        self.stop_after = stop_after

    def evaluate(self, evaluator, configs):
        for i, result in super().evaluate(evaluator, configs):
            if len(self.evaluated) == self.stop_after:
                raise Killed
            self.evaluated.append(result.archid)
            yield i, result


def test_a_resumed_run_evaluates_neither_a_finished_batch_nor_a_finished_candidate_again(tmp_path):
    job = SearchJob(objectives=DETERMINISTIC, strategy="exhaustive")
    settings, run = job.search_settings(), tmp_path / "run"
    run.mkdir()
    algorithm = Exhaustive(TINY, batch=20).setup(LTSProblem(TINY, settings.objectives), seed=settings.seed)
    save_checkpoint(run, RunState(algorithm))  # a run of batches of 20, its first not asked yet
    first = Counting(stop_after=30)
    with pytest.raises(Killed):
        run_search(TINY, settings, Evaluator(job.eval_settings(), tmp_path / "a.sqlite"), first, run, resume=True,
                   progress=False)
    assert read_run_state(run).generation == 1 and len(first.evaluated) == 30  # one batch done, 10 of the next
    second = Counting()  # an empty cache: only the run folder knows what was finished
    results, front, state = run_search(TINY, settings, Evaluator(job.eval_settings(), tmp_path / "b.sqlite"),
                                       second, run, resume=True, progress=False)
    assert len(second.evaluated) == 72 - 30 and not set(first.evaluated) & set(second.evaluated)
    assert sorted(r.archid for r in results) == sorted(first.evaluated + second.evaluated)
    assert state.generation == 4 and state.finished and not state.algorithm.has_next()


def test_what_it_cannot_do_is_one_line(tmp_path):
    measured = search(tmp_path, "--config", tiny_space(tmp_path), "--strategy", "exhaustive", "--seq-len", 32,
                      "--costs", "measured")
    assert measured.returncode == 2 and measured.stderr.count("\n") == 1, measured.stderr
    assert "onnx_memory_mb is measured per candidate" in measured.stderr and "--costs predicted" in measured.stderr
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
