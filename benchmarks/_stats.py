"""The statistics the benchmarks compare figures with: a rank correlation, and a fidelity summary by space."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of `a` and `b` (ties get their average rank)."""
    from scipy.stats import spearmanr  # here, not at the top: see "Measuring children" in benchmarks/__init__.py

    return float(spearmanr(a, b).statistic)


def fidelity(rows: Sequence[Mapping[str, Any]], figures: Mapping[str, tuple[str, str]],
             spaces: Sequence[str]) -> dict[str, float]:
    """Per objective and space (and "all"): the Spearman correlation of the estimate with the measured figure, the
    median and worst |error| and the median error. `figures`: objective -> (estimate column, measured column); a
    row holds its error as ``"<objective> error"`` and its space as ``"space"``."""
    import numpy as np

    summary = {}
    for objective, (estimate, measured) in figures.items():
        for space in (*spaces, "all"):
            mine = [r for r in rows if space in ("all", r["space"])]
            errors = [r[f"{objective} error"] for r in mine]
            key = f"{objective}_{space.replace('-', '_')}"
            summary[f"{key}_spearman"] = round(spearman([r[estimate] for r in mine], [r[measured] for r in mine]), 4)
            summary[f"{key}_median_abs_error"] = round(float(np.median(np.abs(errors))), 4)
            summary[f"{key}_max_abs_error"] = round(float(np.max(np.abs(errors))), 4)
            summary[f"{key}_median_error"] = round(float(np.median(errors)), 4)
    return summary
