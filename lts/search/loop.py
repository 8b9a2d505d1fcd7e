"""The search loop: ask the algorithm for a generation, evaluate it, tell it, checkpoint; until it is done.

pymoo owns the search (``lts.search.strategies``: NSGA-II, or the exhaustive listing); this loop decodes genes
into architectures (``lts.search.space.Space.decode``), evaluates them through the Evaluator (cache first), and
records every candidate with its generation. Every result is appended to the run's record
(``lts.search.record``) the moment it exists. A checkpoint (``lts.search.checkpoint``: the pickled algorithm,
whose random generator it carries, plus the run log) is written atomically after each generation; ``resume``
reloads it and the record, re-asks the interrupted generation identically and serves its finished successes
from the record, so a killed search loses no finished evaluation and ends on the same front, even without the
user-wide cache.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from pymoo.core.algorithm import Algorithm
from pymoo.core.evaluator import Evaluator as PymooEvaluator
from pymoo.core.population import Population
from pymoo.problems.static import StaticProblem

from lts.core import faults
from lts.core.errors import LTSError
from lts.cost.evaluator import EvalResult, Evaluator
from lts.families import Arch
from lts.search.checkpoint import RunState, read_run_state, save_checkpoint
from lts.search.constraints import feasible
from lts.search.executors import Executor
from lts.search.fronts import hypervolume, objective_matrix, pareto_front
from lts.search.record import RunRecord
from lts.search.settings import SearchSettings
from lts.search.space import Space
from lts.search.strategies import Exhaustive, make_algorithm

log = logging.getLogger(__name__)


ACTIVE_ROUNDS = 8  # rounds of active sampling per generation at most (each measures the most uncertain first)


def fill_part_table(evaluator: Evaluator, configs: Sequence[Arch], progress: bool = True) -> None:
    """Before the candidates `configs` are evaluated, measure what their costs are composed or predicted from:
    with costs predicted, the part shapes and whole peaks the cost models ask for (a design, then the most
    uncertain predictions, round after round: ``Evaluator.to_measure``); else every latency part shape the store
    lacks. Part shapes are timed many per measuring child (``Evaluator.time_parts``), peaks one child each."""
    if not evaluator.settings.predicted:
        _measure(evaluator, evaluator.untimed_parts(configs), [], progress)
        return
    for _ in range(ACTIVE_ROUNDS):
        parts, peaks = evaluator.to_measure(configs)
        if not parts and not peaks:
            break
        if not _measure(evaluator, parts, peaks, progress):
            break  # nothing new could be measured: predict with what there is, or measure per candidate


def _measure(evaluator: Evaluator, parts: list[tuple[Arch, str]], peaks: list[Arch], progress: bool) -> int:
    """Time `parts` and measure `peaks` (one bar each); how many were stored."""
    from tqdm.auto import tqdm

    stored = 0
    for what, items, run in (("part shapes", parts, evaluator.time_parts), ("whole peaks", peaks,
                                                                            evaluator.measure_peaks)):
        if not items:
            continue
        bar = tqdm(total=len(items), desc=f"table: {what}", unit="graph", disable=not progress, leave=True,
                   dynamic_ncols=True)
        failed = 0
        for item, reason in run(items):
            bar.update(1)
            if reason is None:
                stored += 1
                continue
            failed += 1
            log.warning("measuring %s failed (%s); its candidates are measured themselves", item, reason)
            bar.set_postfix(failed=failed)
        bar.close()
    return stored


def run_search(space: Space, settings: SearchSettings, evaluator: Evaluator, executor: Executor, run_dir: Path,
               resume: bool = False, progress: bool = True) -> tuple[list[EvalResult], list[EvalResult], RunState]:
    """Run (or resume) the search; return (all results in order, the Pareto front, final state)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(run_dir)
    recorded = record.load() if resume else {}
    state = read_run_state(run_dir) if resume else _start(space, settings, run_dir)
    by_id = _finished_results(state, recorded, run_dir, record.path.name)
    algorithm = state.algorithm
    generations, unit = (algorithm.batches, "batch") if isinstance(algorithm, Exhaustive) else \
        (settings.generations, "gen")  # NSGA-II's count is the run's setting: a resumed run may raise it
    while state.generation < generations and algorithm.has_next():
        gen = state.generation
        pop = algorithm.ask()
        if pop is None or len(pop) == 0:
            log.warning("no new architecture left to try (space of %d exhausted); stopping early", space.size)
            break
        configs = [space.decode(x) for x in pop.get("X")]
        done, bar = _evaluate(configs, gen, recorded, record, evaluator, executor,
                              f"{unit} {gen + 1}/{generations}", progress)
        _tell(algorithm, pop, done, settings)
        for x, r in zip(pop.get("X"), done):
            by_id[r.archid] = r
            state.log.append({"generation": gen, **r.config.to_dict(), "archid": r.archid,
                              "genes": " ".join(str(int(x[g])) for g in space.genes)})
        state.generation = gen + 1
        state.finished = state.generation >= generations
        _show_front(bar, [by_id[row["archid"]] for row in state.log], done, settings)
        save_checkpoint(run_dir, state)

    everything = [by_id[row["archid"]] for row in state.log]
    return everything, pareto_front(everything, settings.objectives, settings.constraints), state


def _start(space: Space, settings: SearchSettings, run_dir: Path) -> RunState:
    """A new run's state, checkpointed at once: a run killed in its first generation resumes too (it re-asks it)."""
    state = RunState(make_algorithm(space, settings))
    save_checkpoint(run_dir, state)
    return state


def _finished_results(state: RunState, recorded: dict[str, EvalResult], run_dir: Path,
                      record_name: str) -> dict[str, EvalResult]:
    """The results of the generations the checkpoint counts as finished, by archid: from the run's record, never
    evaluated again."""
    by_id: dict[str, EvalResult] = {}
    for row in state.log:
        hit = recorded.get(row["archid"])
        if hit is None:
            raise LTSError(f"cannot resume {run_dir}: finished candidate {row['archid']} is missing from "
                           f"{record_name}")
        by_id[row["archid"]] = hit
    return by_id


def _evaluate(configs: list[Arch], gen: int, recorded: dict[str, EvalResult], record: RunRecord,
              evaluator: Evaluator, executor: Executor, desc: str, progress: bool) -> tuple[list[EvalResult], Any]:
    """One generation's results, in order, and its progress bar (still open): a success the run's record holds
    (finished before the run was killed), else the cache, else evaluated by the executor. Each new result is
    appended to the record the moment it exists; failures are tried again."""
    from tqdm.auto import tqdm

    results: list[EvalResult | None] = [None] * len(configs)
    todo = []
    for i, c in enumerate(configs):
        mine = recorded.get(c.archid)
        if mine is not None and mine.ok:
            results[i] = mine
            continue
        hit = evaluator.cached(c)
        if hit is not None:
            record.append(hit, gen)
            results[i] = hit
        else:
            todo.append(i)
    fill_part_table(evaluator, [configs[i] for i in todo], progress)
    bar = tqdm(total=len(configs), desc=desc, unit="arch", disable=not progress, leave=True, dynamic_ncols=True)
    bar.update(len(configs) - len(todo))
    for j, res in executor.evaluate(evaluator, [configs[i] for i in todo]):
        record.append(res, gen)  # the run's record, the moment it exists
        evaluator.store(res)  # successes only, for later runs
        faults.point("evaluated", res.archid)
        results[todo[j]] = res
        bar.update(1)
        if not res.ok:
            log.warning("%s %s", res.archid, res.status)
    done = [r for r in results if r is not None]
    assert len(done) == len(configs)
    return done, bar


def _tell(algorithm: Algorithm, pop: Population, done: Sequence[EvalResult], settings: SearchSettings) -> None:
    """Give the generation's objectives and budgets to pymoo (as its evaluator would) and tell the algorithm."""
    F, G = objective_matrix(done, settings.objectives, settings.constraints)
    PymooEvaluator().eval(StaticProblem(algorithm.problem, F=F, G=G), pop)
    algorithm.tell(infills=pop)


def _show_front(bar: Any, everything: list[EvalResult], done: list[EvalResult], settings: SearchSettings) -> None:
    """The front so far on the generation's progress bar (size, hypervolume, failures, feasible), then close it."""
    front = pareto_front(everything, settings.objectives, settings.constraints)
    extra = {"feasible": sum(r.ok and feasible(r, settings.constraints) for r in everything)} \
        if settings.constraints else {}
    bar.set_postfix(front=len(front), hv=f"{hypervolume(front, everything, settings.objectives):.4f}",
                    failed=sum(not r.ok for r in done), **extra)
    bar.close()
