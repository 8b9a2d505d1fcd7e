"""The Objective registry: every figure LTS records about a candidate, defined once.

An :class:`Objective` is one object: its name (the CSV column and JSON key), unit, direction,
the label and display scale used by plots, galleries and printouts, and how its value is
obtained from the candidate's config and its measurement (:class:`Measurement`). Everything
else iterates over :data:`REGISTRY`: the search's CSV columns and JSON keys, the plot axes,
the gallery columns, the ``python -m lts evaluate`` printout, the ``--objectives`` help, and
the cache key (:func:`definitions`: each entry's declared fields and its ``version``, so a new
objective, or one whose ``version`` was bumped, is never served a stale cached value; editing the
source of ``compute``, even its comments, changes nothing: bump ``version`` when the value changes).

Adding an objective is one ``register(Objective(...))`` call (here, or in a plugin module);
if it needs a new kind of measurement, ``lts/cost/measure.py`` gets a probe for it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

from lts.core import cachekeys
from lts.core.arch import ArchConfig
from lts.core.errors import LTSError
from lts.cost.proxy import non_embedding_params, total_params

MIB = 2**20


@dataclass(frozen=True)
class Timing:
    """Median latency (s) of repeated runs, with its spread, and the reference graph's median beside it.

    ``reference_s`` is the latency of a fixed reference graph timed around this one (same process,
    same moments): ``median_s / reference_s`` is the latency in reference units, which means the
    same thing whenever it was measured on this hardware (see ``lts.cost.measure``). ``cv`` is the
    spread of single runs; ``drift`` the relative spread of the reference-unit figure between
    rounds taken seconds apart (0 when not measured in rounds).
    """

    median_s: float
    cv: float
    repeats: int
    reference_s: float | None = None
    drift: float = 0.0

    @property
    def sigma(self) -> float:
        """Relative standard deviation of this timing between two measurements: runs' spread and drift."""
        return math.hypot(self.cv, self.drift)

    @property
    def std_s(self) -> float:
        return self.cv * self.median_s


@dataclass(frozen=True)
class Measurement:
    """What probing a candidate produced (empty fields: that probe did not run).

    ``timings`` maps a graph part ("full", or "base" and "block") to its Timing; memory
    figures are bytes over the measuring process's baseline. ``calibration_s`` is the reference
    graph's median at the moment the figures are reported for (the run's calibration): a timing
    taken at another moment is rescaled by ``calibration_s / reference_s``, so drift of the
    machine's speed between moments cancels.
    """

    file_bytes: int | None = None
    memory_bytes: int | None = None
    memory_sampled_bytes: int | None = None
    timings: Mapping[str, Timing] = field(default_factory=dict)
    calibration_s: float | None = None
    generation_memory_bytes: int | None = None
    generation_memory_sampled_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"file_bytes": self.file_bytes, "memory_bytes": self.memory_bytes,
                "memory_sampled_bytes": self.memory_sampled_bytes,
                "generation_memory_bytes": self.generation_memory_bytes,
                "generation_memory_sampled_bytes": self.generation_memory_sampled_bytes,
                "timings": {p: asdict(t) for p, t in self.timings.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], calibration_s: float | None = None) -> Measurement:
        return cls(d.get("file_bytes"), d.get("memory_bytes"), d.get("memory_sampled_bytes"),
                   {p: Timing(**t) for p, t in d.get("timings", {}).items()}, calibration_s,
                   d.get("generation_memory_bytes"), d.get("generation_memory_sampled_bytes"))


@dataclass(frozen=True)
class Objective:
    """One recorded figure. ``direction`` is +1 to minimise, -1 to maximise (applied only by the search).

    ``compute(config, measurement)`` returns the value in ``unit`` (NaN when its probe did not run).
    ``probe`` names what the measuring child must do for it: None (a pure function of the config,
    deterministic), "file" (the graph's size, deterministic, no child), or a measured probe
    ("memory", "latency") that runs in an isolated child process on the Target.
    ``searchable`` entries may be ``--objectives``; the others are recorded beside them.
    Plots show ``value * scale`` in ``display_unit``; the gallery and printouts show ``display(value)``
    (integers with thousands separators, other values scaled and formatted with ``fmt``).
    ``gallery`` entries get a column in the markdown gallery of the front.
    ``noise(config, measurement)`` is how far the value may move between two measurements of the
    same candidate (same unit; None: exact): differences within it are ties for the robust front.
    ``version`` (a positive integer) identifies ``compute`` in the cache key: bump it whenever the
    value for the same measurement changes, and cached results are computed again (the source of
    ``compute`` is never hashed: a comment edit invalidates nothing).
    """

    name: str
    unit: str
    direction: int
    label: str
    compute: Callable[[ArchConfig, Measurement], float]
    probe: str | None = None
    searchable: bool = True
    display_unit: str = ""
    scale: float = 1.0
    fmt: str = ".1f"
    integer: bool = False
    gallery: bool = True
    noise: Callable[[ArchConfig, Measurement], float] | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ValueError(f"{self.name}: direction must be +1 (minimise) or -1 (maximise)")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"{self.name}: version must be a positive integer, got {self.version!r}")

    @property
    def measured(self) -> bool:
        """True when its value needs a measurement on the Target (noisy, machine-specific)."""
        return self.probe not in (None, "file")

    @property
    def axis_label(self) -> str:
        """Plot axis label: label and the unit of the plotted (scaled) value."""
        unit = self.display_unit or self.unit
        return f"{self.label} ({unit})" if unit else self.label

    @property
    def header(self) -> str:
        """Column header for the gallery: label and the unit of ``display``."""
        unit = "" if self.integer else (self.display_unit or self.unit)
        return f"{self.label} ({unit})" if unit else self.label

    def display(self, value: Any) -> str:
        """The value as shown to people ('' when missing)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if self.integer:
            return f"{int(value):,}"
        return format(value * self.scale, self.fmt)

    def value(self, config: ArchConfig, measurement: Measurement) -> float | int:
        v = self.compute(config, measurement)
        return int(v) if self.integer and v is not None and not (isinstance(v, float) and math.isnan(v)) else v

    def tolerance(self, config: ArchConfig, measurement: Measurement) -> float:
        """The noise of this value for `config` (0 for exact values, NaN when it cannot be told)."""
        return 0.0 if self.noise is None else float(self.noise(config, measurement))

    def definition(self) -> dict[str, Any]:
        """What the stored value means (part of the cache key): the declared fields that change it and ``version``.

        Display fields (label, scale, fmt, ...) and ``noise`` are left out: they are applied when a
        result is shown or compared, never stored.
        """
        return {"name": self.name, "unit": self.unit, "probe": self.probe, "integer": self.integer,
                "version": self.version}


REGISTRY: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Add (or replace) an objective; returns it. The only step needed to record a new figure."""
    REGISTRY[objective.name] = objective
    return objective


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def get(name: str) -> Objective:
    try:
        return REGISTRY[name]
    except KeyError:
        raise LTSError(f"unknown objective {name!r} (choose from {', '.join(searchable_names())})") from None


def searchable_names() -> list[str]:
    return [o.name for o in REGISTRY.values() if o.searchable]


def parse_objectives(text: str | Iterable[str]) -> tuple[str, ...]:
    """A comma-separated list (or sequence) of at least two distinct searchable objective names."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in REGISTRY or not REGISTRY[n].searchable]
    if unknown:
        raise LTSError(f"unknown objective(s): {', '.join(unknown)} (choose from {', '.join(searchable_names())})")
    if len(names) < 2:
        raise LTSError("a search needs at least two objectives (comma-separated)")
    if len(set(names)) != len(names):
        raise LTSError(f"duplicate objective in {','.join(names)}")
    return tuple(names)


def objectives_help() -> str:
    """The ``--objectives`` help: every searchable name, its unit and direction."""
    parts = [f"{o.name} ({'max' if o.direction < 0 else 'min'}, {o.unit})" for o in REGISTRY.values() if o.searchable]
    return "comma-separated, two or more of: " + ", ".join(parts)


def definitions() -> list[dict[str, Any]]:
    """Every registered objective's definition, by name: part of each cached result's key."""
    return [REGISTRY[name].definition() for name in sorted(REGISTRY)]


def registry_key() -> str:
    """A digest of :func:`definitions` (sha1, 40 hex characters), for logs and reports."""
    return cachekeys.digest(definitions())


GENERATION_PROBES = frozenset({"decode", "generation_memory"})  # measured on the generation (KV-cache) graph
FORWARD_PROBES = frozenset({"latency", "memory"})  # measured on the forward graph


def probes_needed(names: Iterable[str] | None = None) -> set[str]:
    """The measured probes the given objectives (default: all registered) need."""
    objs = REGISTRY.values() if names is None else (get(n) for n in names)
    return {o.probe for o in objs if o.measured and o.probe is not None}


# ----------------------------------------------------------------------------- the built-in objectives

def _scaled(t: Timing, calibration_s: float | None) -> float:
    """A part's median at the calibration moment: rescaled by the reference timed beside it."""
    if calibration_s is None or not t.reference_s:
        return t.median_s
    return t.median_s * calibration_s / t.reference_s


def _terms(n_layer: int, m: Measurement) -> list[tuple[Timing, float]] | None:
    """The timed parts of the whole forward and the seconds each adds at ``m.calibration_s`` (None: not timed)."""
    timings = m.timings
    if "full" in timings:
        return [(timings["full"], _scaled(timings["full"], m.calibration_s))]
    if "base" not in timings or "block" not in timings:
        return None
    b, k = timings["base"], timings["block"]
    return [(b, _scaled(b, m.calibration_s)), (k, n_layer * _scaled(k, m.calibration_s))]


def compose_latency(n_layer: int, m: Measurement) -> tuple[float, float]:
    """(median seconds, coefficient of variation) of the whole forward from its timed parts.

    "full" when the whole graph was timed; else ``base + n_layer * block`` (the embeddings + mask +
    LM head graph, and one block; each timed once per shape and cached). Each part is rescaled to
    ``m.calibration_s`` by the reference timed beside it (drift between moments cancels). One block
    timing scales with depth, so its spread does too.
    """
    terms = _terms(n_layer, m)
    if terms is None:
        return math.nan, math.nan
    latency = sum(v for _, v in terms)
    std = math.sqrt(sum((t.cv * v) ** 2 for t, v in terms))
    return latency, std / latency if latency > 0 else math.nan


def latency_sigma(n_layer: int, m: Measurement) -> float:
    """Relative standard deviation of the latency between measurements (single runs' spread and drift)."""
    terms = _terms(n_layer, m)
    if terms is None:
        return math.nan
    latency = sum(v for _, v in terms)
    return math.sqrt(sum((t.sigma * v) ** 2 for t, v in terms)) / latency if latency > 0 else math.nan


def latency_units(n_layer: int, m: Measurement) -> float:
    """The latency in reference-graph units (latency / reference latency): comparable across moments."""
    parts = [m.timings.get(p) for p in (("full",) if "full" in m.timings else ("base", "block"))]
    if any(t is None or not t.reference_s for t in parts):
        return math.nan
    units = [t.median_s / t.reference_s for t in parts]  # type: ignore[union-attr]
    return units[0] if len(units) == 1 else units[0] + n_layer * units[1]


NOISE_SIGMAS = 2.0  # latency ties: within two standard deviations (runs' spread and drift between rounds)
MEMORY_NOISE_BYTES = MIB  # memory ties: within 1 MiB + 1 % (allocator granularity, page rounding)


def latency_noise(config: ArchConfig, m: Measurement) -> float:
    return NOISE_SIGMAS * compose_latency(config.n_layer, m)[0] * latency_sigma(config.n_layer, m)


def decode_latency(m: Measurement) -> float:
    """One decoding step at ``--context`` tokens, at the calibration moment (NaN when not timed)."""
    t = m.timings.get("decode")
    return math.nan if t is None else _scaled(t, m.calibration_s)


def decode_noise(config: ArchConfig, m: Measurement) -> float:
    t = m.timings.get("decode")
    return math.nan if t is None else NOISE_SIGMAS * decode_latency(m) * t.sigma


def memory_noise(value_bytes: int | None) -> float:
    return math.nan if value_bytes is None else (MEMORY_NOISE_BYTES + 0.01 * value_bytes) / MIB


def _mib(value: int | None) -> float:
    return math.nan if value is None else value / MIB


register(Objective(
    "non_embedding_params", "parameters", -1, "non-embedding parameters",
    compute=lambda c, m: non_embedding_params(c), display_unit="millions", scale=1e-6, fmt=".2f", integer=True))

register(Objective(
    "onnx_latency_s", "s", +1, "ONNX Runtime latency",
    compute=lambda c, m: compose_latency(c.n_layer, m)[0], probe="latency", display_unit="ms", scale=1e3,
    noise=latency_noise))

register(Objective(
    "onnx_latency_cv", "", +1, "latency CV",
    compute=lambda c, m: compose_latency(c.n_layer, m)[1], probe="latency", searchable=False, fmt=".3f"))

register(Objective(
    "onnx_latency_units", "reference units", +1, "latency / reference graph latency",
    compute=lambda c, m: latency_units(c.n_layer, m), probe="latency", searchable=False, fmt=".3f", gallery=False))

register(Objective(
    "onnx_memory_mb", "MiB", +1, "ONNX Runtime peak memory",
    compute=lambda c, m: _mib(m.memory_bytes), probe="memory", noise=lambda c, m: memory_noise(m.memory_bytes)))

register(Objective(
    "onnx_decode_latency_s", "s", +1, "ONNX Runtime decode step",
    compute=lambda c, m: decode_latency(m), probe="decode", display_unit="ms", scale=1e3, fmt=".2f",
    noise=decode_noise))

register(Objective(
    "onnx_generation_memory_mb", "MiB", +1, "ONNX Runtime generation memory",
    compute=lambda c, m: _mib(m.generation_memory_bytes), probe="generation_memory",
    noise=lambda c, m: memory_noise(m.generation_memory_bytes)))

register(Objective(
    "onnx_file_mb", "MiB", +1, "ONNX file size",
    compute=lambda c, m: _mib(m.file_bytes), probe="file"))

register(Objective(
    "total_params", "parameters", -1, "total parameters",
    compute=lambda c, m: total_params(c), searchable=False, display_unit="millions", scale=1e-6, fmt=".2f",
    integer=True, gallery=False))

register(Objective(
    "onnx_memory_sampled_mb", "MiB", +1, "peak memory sampled from outside",
    compute=lambda c, m: _mib(m.memory_sampled_bytes), probe="memory", searchable=False, gallery=False))

register(Objective(
    "onnx_generation_memory_sampled_mb", "MiB", +1, "generation memory sampled from outside",
    compute=lambda c, m: _mib(m.generation_memory_sampled_bytes), probe="generation_memory", searchable=False,
    gallery=False))
