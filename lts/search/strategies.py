"""The search posed to pymoo: the problem (a space's named Integer genes), and the algorithm of each
``--strategy``: NSGA-II (``nsga2``), or :class:`Exhaustive`, which lists every architecture of the space.

Both are pymoo ``Algorithm`` objects driven by ask/tell (``lts.search.loop``), so both are evaluated, recorded,
checkpointed and resumed the same way; both also run in pymoo's own loop (``pymoo.optimize.minimize``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
from pymoo.core.algorithm import Algorithm
from pymoo.core.callback import Callback
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mixed import MixedVariableMating, MixedVariableSampling
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.termination import NoTermination
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.termination.max_gen import MaximumGenerationTermination
from pymoo.util.display.multi import MultiObjectiveOutput

from lts.core.errors import LTSError
from lts.search.constraints import Constraint
from lts.search.settings import SearchSettings
from lts.search.space import Space

EXHAUSTIVE_LIMIT = 100_000  # the most architectures --strategy exhaustive lists
EXHAUSTIVE_BATCH = 512  # architectures per batch of an exhaustive run (progress, checkpoint)


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
    """Duplicates by archid, against the offspring, the population and every past candidate (``seen``)."""

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


class RememberCandidates(Callback):
    """Every candidate told joins the duplicates' ``seen`` (pymoo calls this at the end of each tell), so one that
    did not survive is never asked for again."""

    def __init__(self, duplicates: ArchDuplicates) -> None:
        super().__init__()
        self.duplicates = duplicates

    def notify(self, algorithm: Algorithm) -> None:
        if algorithm.off is not None:
            self.duplicates.seen.update(self.duplicates.space.decode(x).archid for x in algorithm.off.get("X"))


def check_listable(space: Space) -> None:
    """One line when a space is too large for --strategy exhaustive."""
    if space.size > EXHAUSTIVE_LIMIT:
        raise LTSError(f"--strategy exhaustive: the space holds about {space.size:.3g} architectures, more than the "
                       f"{EXHAUSTIVE_LIMIT:,} it lists; use --strategy nsga2")


class Exhaustive(Algorithm):
    """Every architecture of the space once, `batch` per generation, for the exact front.

    Its population is the non-dominated set of what it was told so far (``opt``, as pymoo keeps it); it terminates
    once the last batch is told (pymoo's ``MaximumGenerationTermination`` over the batches). Gene combinations
    that decode to the same architecture are listed once.
    """

    def __init__(self, space: Space, batch: int = EXHAUSTIVE_BATCH, **kwargs: Any) -> None:
        check_listable(space)
        genes, seen = [], set()
        for arch in space.configs():
            if arch.archid not in seen:
                seen.add(arch.archid)
                genes.append(space.encode(arch))
        self.genes, self.batch, self.asked = genes, batch, 0
        super().__init__(termination=MaximumGenerationTermination(self.batches), output=MultiObjectiveOutput(),
                         **kwargs)

    @property
    def batches(self) -> int:
        """Generations in all: the space's architectures, `batch` at a time."""
        return math.ceil(len(self.genes) / self.batch)

    def _initialize_infill(self) -> Population | None:
        return self._infill()

    def _infill(self) -> Population | None:
        X = self.genes[self.asked:self.asked + self.batch]
        if not X:  # asked past the end of the list (pymoo's way to say the algorithm has nothing left)
            self.termination.force_termination = True
            return None
        self.asked += len(X)
        return Population.new("X", np.array(X, dtype=object))

    def _advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self.pop = infills if self.opt is None else Population.merge(self.opt, infills)


def make_algorithm(space: Space, settings: SearchSettings) -> Algorithm:
    """The algorithm of ``settings.strategy``, set up on the space's problem with the search's seed.

    nsga2: pymoo's NSGA-II over named variables (its mixed-variable recipe: Integer genes get SBX and polynomial
    mutation with rounding), parents by NSGA-II's binary tournament, duplicates by archid; it never terminates by
    itself (the search stops it after ``settings.generations``, which a resumed run may raise).
    exhaustive: :class:`Exhaustive`.
    """
    if settings.strategy == "exhaustive":
        algorithm: Algorithm = Exhaustive(space)
    else:
        duplicates = ArchDuplicates(space)
        repair = SpaceRepair()
        algorithm = NSGA2(
            pop_size=settings.population,
            sampling=MixedVariableSampling(),
            mating=MixedVariableMating(selection=TournamentSelection(func_comp=binary_tournament), repair=repair,
                                       eliminate_duplicates=duplicates),
            repair=repair,
            eliminate_duplicates=duplicates,
            callback=RememberCandidates(duplicates),
            termination=NoTermination(),
        )
    return algorithm.setup(LTSProblem(space, settings.objectives, settings.constraints), seed=settings.seed,
                           verbose=False)
