"""The rank statistic the benchmarks compare figures with."""

from __future__ import annotations

from collections.abc import Sequence


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of `a` and `b` (ties get their average rank)."""
    from scipy.stats import spearmanr  # here, not at the top: see "Measuring children" in benchmarks/__init__.py

    return float(spearmanr(a, b).statistic)
