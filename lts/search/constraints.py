"""Budgets on any registered objective: ``NAME<=VALUE`` / ``NAME>=VALUE``, as pymoo inequality constraints.

A budget is a real constraint of the search, not a filter on its output: each one is a column
of pymoo's ``G`` (``G <= 0`` is feasible), so NSGA-II's constraint domination steers the
population toward feasible architectures, and an infeasible candidate never enters the front.
``G`` is the violation relative to the budget (``(value - budget) / budget`` for ``<=``), so
budgets in different units weigh alike in the total violation that ranks infeasible candidates.

The value is in the objective's unit, or in its display unit when written with it:
``onnx_decode_latency_s<=0.02`` and ``onnx_decode_latency_s<=20ms`` are the same budget.
A budget that only configs decide (no measurement: the parameter counts) is checked against the
whole space before anything runs: if no architecture of the space meets them all, that is one line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from lts.core.errors import LTSError
from lts.cost.objectives import REGISTRY, Measurement
from lts.cost.objectives import get as get_objective

_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
                      r"([A-Za-z]*)\s*$")
ENUMERABLE = 1_000_000  # spaces up to this size are enumerated to prove config-only budgets possible


@dataclass(frozen=True)
class Constraint:
    """``name <= value`` (op "<=") or ``name >= value`` (op ">="), value in the objective's unit."""

    name: str
    op: str
    value: float

    def __post_init__(self) -> None:
        get_objective(self.name)  # unknown name: one line listing the known ones
        if self.op not in ("<=", ">="):
            raise LTSError(f"constraint {self.name}: the operator must be <= or >=, got {self.op!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise LTSError(f"constraint {self.name}{self.op}: the budget must be a finite number, got {self.value!r}")
        if self.value <= 0:  # every registered figure is a size, a count or a time: > 0
            raise LTSError(f"constraint {self}: a budget must be > 0 ({self.name} is never negative)")

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value:g}"

    def violation(self, value: float) -> float:
        """pymoo's G: <= 0 when met; the shortfall relative to the budget otherwise (inf when unknown)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.inf
        d = (float(value) - self.value) if self.op == "<=" else (self.value - float(value))
        return d / self.value

    def met(self, value: float) -> bool:
        return self.violation(value) <= 0

    @property
    def on_target(self) -> bool:
        return get_objective(self.name).on_target


def parse_constraint(text: Any) -> Constraint:
    """``NAME<=VALUE`` or ``NAME>=VALUE``, VALUE a number in the objective's unit or with its display unit."""
    if isinstance(text, Constraint):
        return text
    if not isinstance(text, str):
        raise LTSError(f"a constraint must be text like onnx_memory_mb<=300, got {text!r}")
    m = _PATTERN.match(text)
    if not m:
        raise LTSError(f"malformed constraint {text!r}: expected NAME<=VALUE or NAME>=VALUE, "
                       f"e.g. onnx_generation_memory_mb<=300")
    name, op, number, unit = m.groups()
    objective = get_objective(name)
    value = float(number)
    if unit:
        if objective.display_unit and unit == objective.display_unit:
            value /= objective.scale
        elif unit != objective.unit:
            units = " or ".join(u for u in (objective.unit, objective.display_unit) if u) or "no unit"
            raise LTSError(f"constraint {text!r}: unit {unit!r} is not {name}'s ({units})")
    return Constraint(name, op, value)


def parse_constraints(items: Iterable[Any] | str | None) -> tuple[Constraint, ...]:
    """A list of constraint texts (or one comma-separated text); duplicates are refused."""
    if items is None:
        return ()
    if isinstance(items, str):
        items = [part for part in items.split(",") if part.strip()]
    out = tuple(parse_constraint(item) for item in items)
    seen = set()
    for c in out:
        if (c.name, c.op) in seen:
            raise LTSError(f"two {c.op} budgets on {c.name}: give one")
        seen.add((c.name, c.op))
    return out


def violations(result: Any, constraints: Sequence[Constraint]) -> list[float]:
    """pymoo's G row of an evaluated result (one column per constraint)."""
    return [c.violation(result[c.name]) for c in constraints]


def feasible(result: Any, constraints: Sequence[Constraint]) -> bool:
    return all(v <= 0 for v in violations(result, constraints))


def total_violation(result: Any, constraints: Sequence[Constraint]) -> float:
    """Sum of the positive violations: how far from every budget (0 when feasible, inf when failed)."""
    if not getattr(result, "ok", True):
        return math.inf
    return sum(max(0.0, v) for v in violations(result, constraints))


def check_possible(constraints: Sequence[Constraint], space: Any) -> None:
    """One line when the config-only budgets (no measurement needed) exclude every architecture of the space."""
    static = [c for c in constraints if REGISTRY[c.name].probe is None]
    if not static or space.size > ENUMERABLE:
        return
    ranges: dict[str, list[float]] = {c.name: [math.inf, -math.inf] for c in static}
    empty = Measurement()
    for config in space.configs():
        values = {c.name: REGISTRY[c.name].value(config, empty) for c in static}
        if all(c.met(values[c.name]) for c in static):
            return
        for name, v in values.items():
            ranges[name] = [min(ranges[name][0], v), max(ranges[name][1], v)]
    spans = ", ".join(f"{name} spans {REGISTRY[name].display(lo)}-{REGISTRY[name].display(hi)}"
                      f"{' ' + REGISTRY[name].display_unit if REGISTRY[name].display_unit else ''}"
                      for name, (lo, hi) in ranges.items())
    raise LTSError(f"impossible budget: no architecture of the space meets {', '.join(map(str, static))} "
                   f"({spans} over the space's {space.size} architectures)")
