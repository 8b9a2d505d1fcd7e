"""The Objective registry: every figure LTS records about a candidate, defined once.

An :class:`Objective` is one object: its name (the CSV column and JSON key), unit, direction,
the label and display scale used by plots, galleries and printouts, and how its value is
obtained from the candidate's config and its measurement (:class:`Measurement`). Everything
else iterates over :data:`REGISTRY`: the search's CSV columns and JSON keys, the plot axes,
the gallery columns, the ``python -m lts evaluate`` printout, the ``--objectives`` help, and
the cache key (:func:`definitions`: each entry's declared fields and its ``version``, so a new
objective, or one whose ``version`` was bumped, is never served a stale cached value; editing the
source of ``compute``, even its comments, changes nothing: bump ``version`` when the value changes).

Adding an objective is one ``register(Objective(...))`` call (here, or in a module of its own);
if it needs a new kind of measurement, one ``register(Probe(...))`` beside it (``lts.cost.probes``):
at most two files, and which probes and graphs run is derived from the objectives asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from lts.core import cachekeys
from lts.core.errors import LTSError
from lts.cost import probes
from lts.cost.probes import Measurement, Timing
from lts.families import Arch

MIB = 2**20
DEFAULT_OBJECTIVES = ("non_embedding_params", "onnx_latency_s", "onnx_memory_mb")  # what a search optimises unless told


@dataclass(frozen=True)
class Objective:
    """One recorded figure. ``direction`` is +1 to minimise, -1 to maximise (applied only by the search).

    ``compute(config, measurement)`` returns the value in ``unit`` (NaN when its probe did not run).
    ``probe`` names the :class:`lts.cost.probes.Probe` whose result it reads (``measurement.get(probe)``):
    None (a pure function of the config, deterministic), a probe without a graph ("file": deterministic,
    computed in the parent), or a measured probe ("memory", "latency", ...) that runs in an isolated child
    process on the Target. Asking for the objective (or a budget on it) is what makes its probe run.
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
    compute: Callable[[Arch, Measurement], float]
    probe: str | None = None
    searchable: bool = True
    display_unit: str = ""
    scale: float = 1.0
    fmt: str = ".1f"
    integer: bool = False
    gallery: bool = True
    noise: Callable[[Arch, Measurement], float] | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ValueError(f"{self.name}: direction must be +1 (minimise) or -1 (maximise)")
        cachekeys.check_version(self.name, self.version)

    @property
    def on_target(self) -> bool:
        """True when its value needs a measurement on the Target (noisy, machine-specific): its probe has a graph."""
        if self.probe is None:
            return False
        return probes.get(self.probe).on_target

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

    def value(self, config: Arch, measurement: Measurement) -> float | int:
        v = self.compute(config, measurement)
        return int(v) if self.integer and v is not None and not (isinstance(v, float) and math.isnan(v)) else v

    def tolerance(self, config: Arch, measurement: Measurement) -> float:
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


# ----------------------------------------------------------------------------- the built-in objectives

def _scaled(t: Timing, calibration_s: float | None) -> float:
    """A part's median at the calibration moment: rescaled by the reference timed beside it."""
    if calibration_s is None or not t.reference_s:
        return t.median_s
    return t.median_s * calibration_s / t.reference_s


def _counted_parts(config: Arch, timings: Mapping[str, Timing]) -> list[tuple[Timing, int]] | None:
    """The timed parts of the whole forward with how many times each counts (None: one is missing)."""
    if "full" in timings:
        return [(timings["full"], 1)]
    wanted = [("base", 1), *((part, n) for part, (_, n) in config.block_parts().items())]
    if any(part not in timings for part, _ in wanted):
        return None
    return [(timings[part], n) for part, n in wanted]


def _terms(config: Arch, m: Measurement) -> list[tuple[Timing, float]] | None:
    """The timed parts of the whole forward and the seconds each adds at ``m.calibration_s`` (None: not timed)."""
    parts = _counted_parts(config, m.get("latency") or {})
    return None if parts is None else [(t, n * _scaled(t, m.calibration_s)) for t, n in parts]


def compose_latency(config: Arch, m: Measurement) -> tuple[float, float]:
    """(median seconds, coefficient of variation) of the whole forward from its timed parts.

    "full" when the whole graph was timed; else ``base`` + the sum of the layers' blocks (the embeddings +
    mask + LM head graph, and one block graph per block shape, ``config.block_parts()``; each timed once per
    shape and cached). Each part is rescaled to ``m.calibration_s`` by the reference timed beside it (drift
    between moments cancels). One block timing scales with the layers of its shape, so its spread does too.
    """
    terms = _terms(config, m)
    if terms is None:
        return math.nan, math.nan
    latency = sum(v for _, v in terms)
    std = math.sqrt(sum((t.cv * v) ** 2 for t, v in terms))
    return latency, std / latency if latency > 0 else math.nan


def latency_sigma(config: Arch, m: Measurement) -> float:
    """Relative standard deviation of the latency between measurements (single runs' spread and drift)."""
    terms = _terms(config, m)
    if terms is None:
        return math.nan
    latency = sum(v for _, v in terms)
    return math.sqrt(sum((t.sigma * v) ** 2 for t, v in terms)) / latency if latency > 0 else math.nan


def latency_units(config: Arch, m: Measurement) -> float:
    """The latency in reference-graph units (latency / reference latency): comparable across moments."""
    parts = _counted_parts(config, m.get("latency") or {})
    if parts is None or any(not t.reference_s for t, _ in parts):
        return math.nan
    return sum(n * t.median_s / t.reference_s for t, n in parts)


NOISE_SIGMAS = 2.0  # latency ties: within two standard deviations (runs' spread and drift between rounds)
MEMORY_NOISE_BYTES = MIB  # memory ties: within 1 MiB + 1 % (allocator granularity, page rounding)


def latency_noise(config: Arch, m: Measurement) -> float:
    return NOISE_SIGMAS * compose_latency(config, m)[0] * latency_sigma(config, m)


def decode_latency(m: Measurement) -> float:
    """One decoding step at ``--context`` tokens, at the calibration moment (NaN when not timed)."""
    t = m.get("decode")
    return math.nan if t is None else _scaled(t, m.calibration_s)


def decode_noise(config: Arch, m: Measurement) -> float:
    t = m.get("decode")
    return math.nan if t is None else NOISE_SIGMAS * decode_latency(m) * t.sigma


def memory_noise(value_bytes: int | None) -> float:
    return math.nan if value_bytes is None else (MEMORY_NOISE_BYTES + 0.01 * value_bytes) / MIB


def _mib(value: int | None) -> float:
    return math.nan if value is None else value / MIB


def peak_bytes(m: Measurement, probe: str, figure: str = "bytes") -> int | None:
    """A peak-memory probe's figure ("bytes", or "sampled_bytes": sampled from outside); None when it did not run."""
    result = m.get(probe)
    return None if result is None else result.get(figure)


register(Objective(
    "non_embedding_params", "parameters", -1, "non-embedding parameters",
    compute=lambda c, m: c.non_embedding_params(), display_unit="millions", scale=1e-6, fmt=".2f", integer=True))

register(Objective(
    "onnx_latency_s", "s", +1, "ONNX Runtime latency",
    compute=lambda c, m: compose_latency(c, m)[0], probe="latency", display_unit="ms", scale=1e3,
    noise=latency_noise))

register(Objective(
    "onnx_latency_cv", "", +1, "latency CV",
    compute=lambda c, m: compose_latency(c, m)[1], probe="latency", searchable=False, fmt=".3f"))

register(Objective(
    "onnx_latency_units", "reference units", +1, "latency / reference graph latency",
    compute=lambda c, m: latency_units(c, m), probe="latency", searchable=False, fmt=".3f", gallery=False))

register(Objective(
    "onnx_memory_mb", "MiB", +1, "ONNX Runtime peak memory",
    compute=lambda c, m: _mib(peak_bytes(m, "memory")), probe="memory",
    noise=lambda c, m: memory_noise(peak_bytes(m, "memory"))))

register(Objective(
    "onnx_decode_latency_s", "s", +1, "ONNX Runtime decode step",
    compute=lambda c, m: decode_latency(m), probe="decode", display_unit="ms", scale=1e3, fmt=".2f",
    noise=decode_noise))

register(Objective(
    "onnx_generation_memory_mb", "MiB", +1, "ONNX Runtime generation memory",
    compute=lambda c, m: _mib(peak_bytes(m, "generation_memory")), probe="generation_memory",
    noise=lambda c, m: memory_noise(peak_bytes(m, "generation_memory"))))

register(Objective(
    "onnx_file_mb", "MiB", +1, "ONNX file size",
    compute=lambda c, m: _mib(m.get("file")), probe="file"))

register(Objective(
    "total_params", "parameters", -1, "total parameters",
    compute=lambda c, m: c.total_params(), searchable=False, display_unit="millions", scale=1e-6, fmt=".2f",
    integer=True, gallery=False))

register(Objective(
    "onnx_memory_sampled_mb", "MiB", +1, "peak memory sampled from outside",
    compute=lambda c, m: _mib(peak_bytes(m, "memory", "sampled_bytes")), probe="memory", searchable=False,
    gallery=False))

register(Objective(
    "onnx_generation_memory_sampled_mb", "MiB", +1, "generation memory sampled from outside",
    compute=lambda c, m: _mib(peak_bytes(m, "generation_memory", "sampled_bytes")), probe="generation_memory",
    searchable=False, gallery=False))


def probes_for(objective_names: Iterable[str], skip_graphs: Iterable[str] = ()) -> tuple[str, ...]:
    """The probes (sorted names) the given objectives need, plus every graph-less one; those on a graph in
    `skip_graphs` are left out. Unknown objectives or probes: LTSError."""
    skip = set(skip_graphs)
    names = {o.probe for o in map(get, objective_names) if o.probe is not None}
    chosen = {n for n in names if probes.get(n).graph not in skip}
    return tuple(sorted(chosen | set(probes.static_probes())))
