"""NSGA-II over a family's search space with pymoo's ask/tell, checkpointed every generation.

pymoo owns the search (its mixed-variable NSGA-II over the space's named Integer genes: random
sampling, SBX/PM with rounding, binary tournament, survival by non-dominated rank and crowding;
hypervolume); this module only decodes genes into
architectures (``lts.search.space.Space.decode``), evaluates them through the Evaluator (cache first), and records every
candidate with its generation. Every result is appended to the run's record
(``lts.search.record``) the moment it exists. A checkpoint (the pickled algorithm, whose
random generator it carries, plus the run log) is written atomically after each generation;
``resume`` reloads it and the record, re-asks the interrupted generation identically and
serves its finished successes from the record, so a killed search loses no finished
evaluation and ends on the same front, even without the user-wide cache.
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.evaluator import Evaluator as PymooEvaluator
from pymoo.core.mixed import MixedVariableMating, MixedVariableSampling
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.termination import NoTermination
from pymoo.indicators.hv import HV
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.problems.static import StaticProblem
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from lts.core import faults, fileio
from lts.core.errors import LTSError, first_line
from lts.core.settings import Choice, Integer, Settings, setting
from lts.cost.evaluator import DEFAULT_OBJECTIVES, EvalResult, Evaluator
from lts.cost.objectives import get as get_objective
from lts.cost.objectives import parse_objectives
from lts.families import Arch
from lts.search.constraints import Constraint, feasible, parse_constraints, violations
from lts.search.executors import Executor
from lts.search.record import RunRecord
from lts.search.space import Space

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pkl"
FAILED_F = 1e30  # objective value given to failed candidates (also marked infeasible)
FAILED_G = 1e6  # a failed candidate's violation of each budget
STRATEGIES = ("nsga2", "exhaustive")
EXHAUSTIVE_LIMIT = 100_000  # the most architectures --strategy exhaustive lists
EXHAUSTIVE_BATCH = 512  # architectures per batch of an exhaustive run (progress, checkpoint)


@dataclass(frozen=True)
class SearchSettings(Settings):
    """What defines a search (saved in the run folder; a resumed run keeps it)."""

    generations: int = setting(6, "NSGA-II generations, the initial population included", Integer(ge=1))
    population: int = setting(36, "candidates per generation (NSGA-II needs parents to mate)", Integer(ge=2))
    seed: int = setting(1, "random seed: same seed, same candidates", Integer(ge=0))
    strategy: str = setting("nsga2", "nsga2: NSGA-II, generations x population candidates; exhaustive: every "
                                     "architecture of the space, for the exact front (objectives and budgets "
                                     "composed from measured parts or computed: no per-candidate measurement)",
                            Choice(STRATEGIES))
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    constraints: tuple[Constraint, ...] = ()

    def check(self) -> None:
        object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        object.__setattr__(self, "constraints", parse_constraints(self.constraints))

    @property
    def needs_measurement(self) -> bool:
        return any(get_objective(o).on_target for o in self.figures)

    @property
    def figures(self) -> tuple[str, ...]:
        """Every objective the search needs a value of: its objectives, then the constrained ones."""
        return self.objectives + tuple(c.name for c in self.constraints if c.name not in self.objectives)


class LTSProblem(Problem):
    """The space's named Integer genes (indices into its choices); constraints: the evaluation succeeded, then
    the budgets."""

    def __init__(self, space: Space, objectives: Sequence[str], constraints: Sequence[Constraint] = ()) -> None:
        super().__init__(vars=space.variables(), n_obj=len(objectives), n_ieq_constr=1 + len(constraints))
        self.space = space
        self.objective_names = tuple(objectives)


class SpaceRepair(Repair):
    """The space's own repair (GPT-2's: round, clip, a head count that divides n_embd), so every X decodes as it is."""

    def _do(self, problem: Any, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        return np.array([problem.space.repair(x) for x in X], dtype=object)


class ArchDuplicates(DuplicateElimination):
    """Duplicates by archid, against the offspring, the population and every past candidate."""

    def __init__(self, space: Space) -> None:
        super().__init__()
        self.space = space
        self.seen: set[str] = set()

    def _do(self, pop: Any, other: Any, is_duplicate: np.ndarray) -> np.ndarray:
        taken = set(self.seen)
        if other is not None:
            taken.update(self.space.decode(x).archid for x in other.get("X"))
        for i, x in enumerate(pop.get("X")):
            aid = self.space.decode(x).archid
            if aid in taken:
                is_duplicate[i] = True
            taken.add(aid)
        return is_duplicate


def check_listable(space: Space) -> None:
    """One line when a space is too large for --strategy exhaustive."""
    if space.size > EXHAUSTIVE_LIMIT:
        raise LTSError(f"--strategy exhaustive: the space holds about {space.size:.3g} architectures, more than the "
                       f"{EXHAUSTIVE_LIMIT:,} it lists; use --strategy nsga2")


class Exhaustive:
    """Every architecture of the space once, in batches: the search loop's algorithm for the exact front.

    It offers what the loop uses of pymoo's NSGA-II (``ask`` a population of genes, ``tell`` it, ``problem``,
    ``eliminate_duplicates.seen``), so an exhaustive run has the same record, checkpoints, resume and report.
    Gene combinations that decode to the same architecture are listed once.
    """

    def __init__(self, space: Space, settings: SearchSettings, batch: int = EXHAUSTIVE_BATCH) -> None:
        check_listable(space)
        self.problem = LTSProblem(space, settings.objectives, settings.constraints)
        self.eliminate_duplicates = ArchDuplicates(space)
        genes, seen = [], set()
        for arch in space.configs():
            if arch.archid not in seen:
                seen.add(arch.archid)
                genes.append(space.encode(arch))
        self.genes, self.batch, self.asked = genes, batch, 0

    @property
    def generations(self) -> int:
        """Batches in all."""
        return math.ceil(len(self.genes) / self.batch)

    def ask(self) -> Population:
        X = self.genes[self.asked:self.asked + self.batch]
        self.asked += len(X)
        return Population.new("X", np.array(X, dtype=object))

    def tell(self, infills: Population) -> None:
        pass


def make_algorithm(space: Space, settings: SearchSettings) -> NSGA2 | Exhaustive:
    """pymoo's NSGA-II over named variables (its mixed-variable recipe: Integer genes get SBX and polynomial
    mutation with rounding), parents by NSGA-II's binary tournament; duplicates by archid. With ``strategy``
    exhaustive: :class:`Exhaustive`."""
    if settings.strategy == "exhaustive":
        return Exhaustive(space, settings)
    duplicates = ArchDuplicates(space)
    repair = SpaceRepair()
    return NSGA2(
        pop_size=settings.population,
        sampling=MixedVariableSampling(),
        mating=MixedVariableMating(selection=TournamentSelection(func_comp=binary_tournament), repair=repair,
                                   eliminate_duplicates=duplicates),
        repair=repair,
        eliminate_duplicates=duplicates,
    )


def objective_matrix(results: Sequence[EvalResult], names: Sequence[str],
                     constraints: Sequence[Constraint] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(F, G) for pymoo: every objective minimised (maximised ones negated here, only here).

    G's first column says the evaluation failed (1) or not (-1); one column per budget follows
    (its relative violation; a failed candidate violates each by FAILED_G, more than any measured one).
    """
    F = np.full((len(results), len(names)), FAILED_F)
    G = np.full((len(results), 1 + len(constraints)), FAILED_G)
    G[:, 0] = 1.0
    for i, r in enumerate(results):
        values = [float(r[name]) for name in names]
        if r.ok and all(math.isfinite(v) for v in values):
            F[i] = [get_objective(name).direction * v for name, v in zip(names, values)]
            G[i, 0] = -1.0
            G[i, 1:] = [min(v, FAILED_G) for v in violations(r, constraints)]
    return F, G


def pareto_front(results: Sequence[EvalResult], objectives: Sequence[str],
                 constraints: Sequence[Constraint] = ()) -> list[EvalResult]:
    """Non-dominated successful results that meet every budget (pymoo's sorting), sorted by the first objective."""
    ok = [r for r in results if r.ok and feasible(r, constraints)]
    if not ok:
        return []
    F, _ = objective_matrix(ok, objectives)
    idx = NonDominatedSorting().do(F, only_non_dominated_front=True)
    front = [ok[i] for i in idx]
    return sorted(front, key=lambda r: tuple(r[o] for o in objectives))


def robust_front(front: Sequence[EvalResult], objectives: Sequence[str]) -> set[str]:
    """Archids of the front members that stay non-dominated when differences within noise are ties.

    Member `a` is dominated within noise by member `b` when `b` is no worse than `a` in every
    objective beyond their combined noise, and better in at least one beyond it (so `a`'s
    advantages, if any, are all within the noise of the measurements). The noise of each value
    comes from its objective (``Objective.noise``: the spread of the timed runs for latency,
    allocator granularity for memory, 0 for exact values).
    """
    def sign_diff(a: EvalResult, b: EvalResult, name: str) -> int:
        """+1: b better than a beyond the noise; -1: worse beyond it; 0: a tie."""
        d = get_objective(name).direction * (float(a[name]) - float(b[name]))
        tol = _tol(a, name) + _tol(b, name)
        return 1 if d > tol else -1 if d < -tol else 0

    robust = set()
    for a in front:
        dominated = False
        for b in front:
            if b is a:
                continue
            signs = [sign_diff(a, b, name) for name in objectives]
            if min(signs) >= 0 and max(signs) > 0:
                dominated = True
                break
        if not dominated:
            robust.add(a.archid)
    return robust


def _tol(r: EvalResult, name: str) -> float:
    t = r.tolerance(name)
    return 0.0 if math.isnan(t) else t


def hypervolume(front: Sequence[EvalResult], everything: Sequence[EvalResult], objectives: Sequence[str]) -> float:
    """pymoo HV of the front, objectives scaled to [0, 1] over all successful results; ref = 1.1."""
    ok = [r for r in everything if r.ok]
    if not front or len(ok) < 2:
        return 0.0
    F_all, _ = objective_matrix(ok, objectives)
    F, _ = objective_matrix(front, objectives)
    lo, hi = F_all.min(axis=0), F_all.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return float(HV(ref_point=np.full(len(objectives), 1.1))((F - lo) / span))


@dataclass
class RunState:
    """Everything a checkpoint holds."""

    algorithm: NSGA2 | Exhaustive
    generation: int = 0  # generations (an exhaustive run's batches) completed
    log: list[dict[str, Any]] = field(default_factory=list)  # one row per candidate, in order
    finished: bool = False


def save_checkpoint(run_dir: Path, state: RunState) -> None:
    with fileio.atomic_path(run_dir / CHECKPOINT) as tmp:
        with open(tmp, "wb") as f:
            data = pickle.dumps(state)
            f.write(data[: len(data) // 2])
            faults.point("checkpoint")  # the fault suite kills the search here, mid-write
            f.write(data[len(data) // 2:])


def read_run_state(run_dir: Path) -> RunState:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise LTSError(f"nothing to resume: no {CHECKPOINT} in {run_dir}")
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except Exception as exc:  # a corrupt/foreign file is user input here
        raise LTSError(f"cannot read checkpoint {path}: {first_line(exc)}") from None
    if not isinstance(state, RunState) or not isinstance(state.algorithm, (NSGA2, Exhaustive)):
        raise LTSError(f"cannot read checkpoint {path}: it holds a {type(state).__name__}, not an LTS search state")
    return state


def fill_part_table(evaluator: Evaluator, configs: Sequence[Arch], progress: bool = True) -> None:
    """Time the latency part shapes `configs` need and the store lacks, many per measuring child (one bar), before
    the candidates are evaluated: then each is composed from stored parts (``Evaluator.time_parts``)."""
    from tqdm.auto import tqdm

    items = evaluator.untimed_parts(configs)
    if not items:
        return
    bar = tqdm(total=len(items), desc="table: part shapes", unit="part", disable=not progress, leave=True,
               dynamic_ncols=True)
    failed = 0
    for (config, part), reason in evaluator.time_parts(items):
        bar.update(1)
        if reason is not None:
            failed += 1
            log.warning("timing %s of %s failed (%s); its candidates time it themselves", part, config.archid, reason)
            bar.set_postfix(failed=failed)
    bar.close()


def run_search(space: Space, settings: SearchSettings, evaluator: Evaluator, executor: Executor, run_dir: Path,
               resume: bool = False, progress: bool = True) -> tuple[list[EvalResult], list[EvalResult], RunState]:
    """Run (or resume) the search; return (all results in order, the Pareto front, final state)."""
    from tqdm.auto import tqdm

    run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(run_dir)
    recorded = record.load() if resume else {}
    if resume:
        state = read_run_state(run_dir)
        algorithm = state.algorithm
    else:
        algorithm = make_algorithm(space, settings)
        if isinstance(algorithm, NSGA2):
            algorithm.setup(LTSProblem(space, settings.objectives, settings.constraints),
                            termination=NoTermination(), seed=settings.seed, verbose=False)
        state = RunState(algorithm)
        save_checkpoint(run_dir, state)  # a run killed in its first generation resumes too (it re-asks it)
    exhaustive = isinstance(algorithm, Exhaustive)
    generations = algorithm.generations if exhaustive else settings.generations
    problem = algorithm.problem
    by_id: dict[str, EvalResult] = {}
    for row in state.log:  # results of finished generations: from the run's record, never re-measured
        hit = recorded.get(row["archid"])
        if hit is None:
            raise LTSError(f"cannot resume {run_dir}: finished candidate {row['archid']} is missing from "
                           f"{record.path.name}")
        by_id[row["archid"]] = hit

    while state.generation < generations:
        gen = state.generation
        pop = algorithm.ask()
        if pop is None or len(pop) == 0:
            log.warning("no new architecture left to try (space of %d exhausted); stopping early", space.size)
            break
        configs = [space.decode(x) for x in pop.get("X")]
        results: list[EvalResult | None] = [None] * len(configs)
        todo = []
        for i, c in enumerate(configs):
            mine = recorded.get(c.archid)  # finished before this run was killed (failures are tried again)
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
        bar = tqdm(total=len(configs), desc=f"{'batch' if exhaustive else 'gen'} {gen + 1}/{generations}", unit="arch",
                   disable=not progress, leave=True, dynamic_ncols=True)
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
        for c, r in zip(pop.get("X"), done):
            by_id[r.archid] = r
            algorithm.eliminate_duplicates.seen.add(r.archid)
            state.log.append({"generation": gen, **r.config.to_dict(), "archid": r.archid,
                              "genes": " ".join(str(int(c[g])) for g in space.genes)})
        F, G = objective_matrix(done, settings.objectives, settings.constraints)
        PymooEvaluator().eval(StaticProblem(problem, F=F, G=G), pop)
        algorithm.tell(infills=pop)
        state.generation = gen + 1
        everything = [by_id[row["archid"]] for row in state.log]
        front = pareto_front(everything, settings.objectives, settings.constraints)
        extra = {"feasible": sum(r.ok and feasible(r, settings.constraints) for r in everything)} \
            if settings.constraints else {}
        bar.set_postfix(front=len(front), hv=f"{hypervolume(front, everything, settings.objectives):.4f}",
                        failed=sum(not r.ok for r in done), **extra)
        bar.close()
        state.finished = state.generation >= generations
        save_checkpoint(run_dir, state)

    everything = [by_id[row["archid"]] for row in state.log]
    return everything, pareto_front(everything, settings.objectives, settings.constraints), state

