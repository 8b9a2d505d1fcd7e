"""Fronts of evaluated candidates: the objective matrix pymoo minimises, the Pareto front, the front robust to
measurement noise, and the hypervolume of a front."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from lts.cost.evaluator import EvalResult
from lts.cost.objectives import get as get_objective
from lts.search.constraints import Constraint, feasible, violations

FAILED_F = 1e30  # objective value given to failed candidates (also marked infeasible)
FAILED_G = 1e6  # a failed candidate's violation of each budget


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
