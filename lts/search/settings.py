"""What defines a search: how many candidates, which strategy, which objectives and budgets (``SearchSettings``)."""

from __future__ import annotations

from dataclasses import dataclass

from lts.core.settings import Choice, Integer, Settings, setting
from lts.cost.evaluator import DEFAULT_OBJECTIVES
from lts.cost.objectives import get as get_objective
from lts.cost.objectives import parse_objectives
from lts.search.constraints import Constraint, parse_constraints

STRATEGIES = ("auto", "nsga2", "exhaustive")


@dataclass(frozen=True)
class SearchSettings(Settings):
    """What defines a search (saved in the run folder; a resumed run keeps it)."""

    generations: int = setting(6, "NSGA-II generations, the initial population included", Integer(ge=1))
    population: int = setting(36, "candidates per generation (NSGA-II needs parents to mate)", Integer(ge=2))
    seed: int = setting(1, "random seed: same seed, same candidates", Integer(ge=0))
    strategy: str = setting("auto", "nsga2: NSGA-II, generations x population candidates; exhaustive: every "
                                    "architecture of the space, for the exact front (objectives and budgets "
                                    "composed from measured parts, predicted or computed: no per-candidate "
                                    "measurement); auto: exhaustive when that holds, the space has at most 20,000 "
                                    "architectures and there are two objectives, else nsga2 (the run says which "
                                    "and why)",
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
