"""Costs predicted from models fitted on what was measured: part latencies from the block table, peak memory from
whole graphs measured for a sample.

Timing every part shape a search meets costs seconds each, and measuring every candidate's peak memory a process
each. Both are smooth functions of what the graph asks of the machine (``lts.cost.features``: FLOPs, bytes,
elements, nodes): :func:`fit` fits a non-negative linear model on the features of what was measured (each row
weighted by its own size, so that the error minimised is relative), and a prediction comes with its relative
uncertainty: the model's leave-one-out error, widened by how far the point lies from what was measured (its
leverage). :func:`design` picks what to measure first (points spread over the candidates' features, the extremes
first), and a prediction too uncertain (:data:`TOLERANCE`) asks for its shape to be measured (active sampling):
interpolation is predicted, extrapolation measured.

:class:`Samples` reads the measurements a store holds for one Target, hardware and measurement settings (the
``timings`` table: a part's timing or a whole graph's peak, each with the features of what was measured) and keeps
one fit per kind ("latency:<role>" per part role, "memory"), refitted when new samples are stored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

# The features each kind of cost is fitted on (``lts.cost.features``). Latency: the work (FLOPs of weight and of
# activation products), the traffic (elements written, weights read), and each node's fixed cost.
LATENCY_COLUMNS = ("weight_flops", "act_flops", "quad_elems", "elems", "weight_bytes", "nodes")
# Peak memory: the weights a session holds (and the folded copy of the largest while it loads), the largest
# activations its planner keeps alive at once, the elements written. Fitted apart for the session's load and its
# first run (benchmarks.memory_options: either sets the peak; apart, leave-one-out median 2.0 % vs 4.4 % together).
MEMORY_COLUMNS = ("weight_bytes", "largest_bytes", "largest_quad_bytes", "elems", "largest_weight_bytes")
MEMORY_PHASES = ("memory:load", "memory:run")
# The probes a model predicts: the latency parts (one model per part role) and the forward graph's peak memory.
# Decoding and generation memory stay measured per candidate: one KV-cache graph per candidate, no parts to share.
PREDICTABLE = ("latency", "memory")
FEATURES_VERSION = 1  # bump when lts.cost.features counts differently: stored features are then not fitted on
# A prediction whose relative uncertainty (one sigma) exceeds this is measured instead (when it is also well beyond
# the fit's own error: lts.cost.evaluator). A timing's own spread between two measurements on a shared 2-core VM
# is 2-5 %: asking a prediction for less buys nothing.
TOLERANCE = 0.04


@dataclass(frozen=True)
class Fit:
    """A fitted non-negative linear model: ``value = intercept + sum(coef * feature)``."""

    columns: tuple[str, ...]
    coef: np.ndarray        # intercept first, then one per column, in the features' own units
    sigma: float            # relative leave-one-out error (root mean square) of the samples
    n: int                  # samples fitted
    scale: np.ndarray       # column scales the leverage is computed at
    inverse: np.ndarray     # pseudo-inverse of the weighted, scaled design's Gram matrix (leverage)

    def predict(self, features: Mapping[str, float]) -> tuple[float, float]:
        """(predicted value, its relative uncertainty: one sigma, a fraction of the value)."""
        x = _row(features, self.columns)
        value = float(x @ self.coef)
        if value <= 0:
            return value, math.inf
        z = x / self.scale / value
        leverage = float(z @ self.inverse @ z)
        return value, self.sigma * math.sqrt(1.0 + leverage)


def fit(samples: Sequence[Mapping[str, float]], values: Sequence[float], columns: Sequence[str]) -> Fit | None:
    """The model of `values` (positive) from `samples`' features, or None with fewer samples than it needs
    (:func:`needed`)."""
    columns = tuple(columns)
    X = np.array([_row(f, columns) for f in samples], dtype=float)
    y = np.asarray(values, dtype=float)
    if len(y) < needed(X):
        return None
    scale = np.where(X.max(axis=0) > 0, X.max(axis=0), 1.0)
    coef = _solve(X, y, scale)
    loo = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        c = _solve(X[keep], y[keep], scale)
        loo.append(float(X[i] @ c) / y[i] - 1.0)
    Z = X / scale / y[:, None]
    return Fit(columns, coef, float(np.sqrt(np.mean(np.square(loo)))), len(y), scale, np.linalg.pinv(Z.T @ Z))


def needed(X: np.ndarray) -> int:
    """Samples a fit on the rows `X` (intercept first) needs: its rank (the directions the features vary in) and
    three more, so that the leave-one-out error means something."""
    if len(X) == 0:
        return 3
    scale = np.where(np.abs(X).max(axis=0) > 0, np.abs(X).max(axis=0), 1.0)
    return int(np.linalg.matrix_rank(X / scale, tol=1e-6)) + 3


def design(candidates: Sequence[Mapping[str, float]], measured: Sequence[Mapping[str, float]],
           columns: Sequence[str], k: int) -> list[int]:
    """Up to `k` of `candidates` (indices) to measure next, spread over their features (log scale): first the
    extremes of the largest feature, then each the farthest from everything measured or chosen (greedy maximin)."""
    if k <= 0 or not candidates:
        return []
    points = np.log1p(np.array([_row(f, columns)[1:] for f in candidates], dtype=float))
    span = points.max(axis=0) - points.min(axis=0)
    points = points / np.where(span > 0, span, 1.0)
    taken = [np.log1p(_row(f, columns)[1:]) / np.where(span > 0, span, 1.0) for f in measured]
    chosen: list[int] = []
    if not taken:  # the smallest and the largest first: what a fit would otherwise extrapolate to
        size = points.sum(axis=1)
        chosen = list(dict.fromkeys([int(np.argmin(size)), int(np.argmax(size))]))[:k]
        taken = [points[i] for i in chosen]
    while len(chosen) < min(k, len(candidates)):
        dist = np.min(np.linalg.norm(points[:, None, :] - np.asarray(taken)[None, :, :], axis=2), axis=1)
        dist[chosen] = -1.0
        best = int(np.argmax(dist))
        if dist[best] <= 0:
            break  # the rest are duplicates of what is measured
        chosen.append(best)
        taken.append(points[best])
    return chosen


class Samples:
    """The measurements a store holds under one key suffix (Target, hardware, measurement settings), by kind, and
    a fit of each, made once and again whenever :meth:`refresh` finds new ones."""

    def __init__(self, store: Any, suffix: str) -> None:
        self.store, self.suffix = store, suffix
        self._rows: dict[str, list[tuple[dict[str, float], float]]] | None = None
        self._fits: dict[str, Fit | None] = {}

    def refresh(self) -> None:
        """Read the store again at the next use (after new samples were stored, by this process or another)."""
        self._rows, self._fits = None, {}

    def rows(self, kind: str) -> list[tuple[dict[str, float], float]]:
        """(features, value) of every usable sample of `kind`."""
        if self._rows is None:
            self._rows = {}
            scan = getattr(self.store, "timings_ending", None)
            for key, raw in (scan(self.suffix) if scan is not None else []):
                for found, features, value in samples_of(key, raw):
                    self._rows.setdefault(found, []).append((features, value))
        return self._rows.get(kind, [])

    def fit(self, kind: str) -> Fit | None:
        if kind not in self._fits:
            rows = self.rows(kind)
            columns = MEMORY_COLUMNS if kind.startswith("memory") else LATENCY_COLUMNS
            self._fits[kind] = fit([f for f, _ in rows], [v for _, v in rows], columns) if rows else None
        return self._fits[kind]

    def predict(self, kind: str, features: Mapping[str, float]) -> tuple[float, float] | None:
        """(value, relative sigma) of `kind` for `features`, or None while there are too few samples to fit."""
        model = self.fit(kind)
        return None if model is None else model.predict(features)

    def peak(self, features: Mapping[str, float]) -> tuple[float, float] | None:
        """(peak bytes, relative sigma): the larger of the load and the run models' predictions, or None."""
        phases = [self.predict(kind, features) for kind in MEMORY_PHASES]
        return None if None in phases else max(phases, key=lambda p: p[0])  # type: ignore[arg-type, return-value]


def sample_value(features: Mapping[str, float], **value: Any) -> str:
    """The stored text of a sample: its measured figures (`value`) with the features of what was measured."""
    return json.dumps({**value, "features": dict(features), "features_version": FEATURES_VERSION})


def samples_of(key: str, raw: str) -> list[tuple[str, dict[str, float], float]]:
    """(kind, features, value) of each figure a stored sample holds: a part's timing (kind "latency:<role>", in
    reference units) or a whole graph's peak ("memory", and its phases "memory:load", "memory:run", bytes); none
    for an entry without features of today's version."""
    data = json.loads(raw)
    if data.get("features_version") != FEATURES_VERSION:
        return []
    head, *middle, _shape, _, _ = key.split(":")
    features = data["features"]
    if head.startswith("memory."):
        phases = [(kind, float(data[f"{kind[7:]}_bytes"])) for kind in MEMORY_PHASES if data.get(f"{kind[7:]}_bytes")]
        return [("memory", features, float(data["bytes"])), *((k, features, v) for k, v in phases)]
    if data.get("reference_s"):
        return [(f"latency:{':'.join(middle)}", features, data["median_s"] / data["reference_s"])]
    return []


def _row(features: Mapping[str, float], columns: Iterable[str]) -> np.ndarray:
    return np.array([1.0, *(float(features.get(c, 0.0)) for c in columns)])


def _solve(X: np.ndarray, y: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Non-negative least squares of the relative error (each row divided by its value)."""
    w = 1.0 / y
    from scipy.optimize import nnls  # here: importing scipy.optimize costs ~0.6 s, and lts evaluate may fit nothing

    coef, _ = nnls(X / scale * w[:, None], y * w, maxiter=50 * X.shape[1])
    return coef / scale
