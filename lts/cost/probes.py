"""The Probe registry: every kind of measurement LTS makes of a candidate, defined once.

A :class:`Probe` is one object: its name (the key of its result in a
:class:`~lts.cost.objectives.Measurement`), the graph it needs, and the function that produces
its result. An :class:`~lts.cost.objectives.Objective` names the probe it reads; asking for
objectives (``--objectives``, budgets, ``lts evaluate``) is all it takes to decide which probes
run (:func:`probes_for`) and so which graphs are written and which measuring children start
(:func:`lts.cost.measure.measure_architecture`). Nothing maps probes onto flags by hand.

Graphs (``Probe.graph``):

- None: no graph is measured; ``run`` is computed in the parent from the config (deterministic,
  cheap: such probes always run, measuring or not). Example: "file", the fp32 graph's size.
- "forward": the whole forward graph at ``seq_len`` (``ctx.write_graph("full")``), in a fresh
  measuring child (the first), e.g. "memory".
- "parts": the latency parts the Evaluator chooses (``ctx.parts``: "full", or those of "base" and
  "block" whose timings are not stored yet), in the same child, after the forward probes. At most
  one probe uses it ("latency"); its result is ``{part: Timing}`` and its shape timings are cached
  by the Evaluator and reused across candidates.
- "kv": the generation graph (with a KV cache), in a fresh child of its own (a peak is honest only
  in a process that has not held another model), e.g. "generation_memory", "decode".

Within one child, probes run by ``order`` (then registration): peak-memory probes first, before any
other session exists. ``run(ctx)`` gets a :class:`lts.cost.measure.ProbeContext` (the config, the
settings, the Target, the graphs and the services: a peak-memory window, timing beside the
reference graph) and returns picklable data: JSON data, a Timing, or mappings of those
(``decode`` turns the stored JSON back into that form; default: as stored).

Adding a measurement is one ``register(Probe(...))`` call (here, or in the objective's own module).
Its ``version`` is part of every evaluation's cache key: bump it when its result changes for the
same graph, and stored evaluations that ran it are measured again.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

from lts.core.cachekeys import check_version
from lts.core.errors import LTSError
from lts.core.onnxgraph import write_onnx
from lts.families import Arch


@dataclass(frozen=True)
class Timing:
    """Median latency (s) of repeated runs, with its spread, and the reference graph's median beside it.

    ``reference_s`` is the latency of a fixed reference graph timed around this one (same process,
    same moments): ``median_s / reference_s`` is the latency in reference units, which means the
    same thing whenever it was measured on this hardware (see ``lts.cost.timing``). ``cv`` is the
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


def _jsonable(value: Any) -> Any:
    """A probe result as JSON data: dataclasses (a Timing) as dicts, mappings and sequences element-wise."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Measurement:
    """What probing a candidate produced: ``results`` maps a probe's name (``lts.cost.probes``) to its result.

    A probe that did not run has no entry (``m.get(name)`` is None). The built-in results: "file" (bytes of
    the fp32 forward graph), "memory" and "generation_memory" (``{"bytes", "sampled_bytes"}``: peak bytes over
    the measuring process's baseline, and the figure sampled from outside), "latency" (``{part: Timing}``,
    part "full", or "base" and "block") and "decode" (a Timing). ``calibration_s`` is the reference graph's
    median at the moment the figures are reported for (the run's calibration): a timing taken at another
    moment is rescaled by ``calibration_s / reference_s``, so drift of the machine's speed between moments
    cancels.
    """

    results: Mapping[str, Any] = field(default_factory=dict)
    calibration_s: float | None = None

    def get(self, probe: str, default: Any = None) -> Any:
        """The result of `probe` (`default` when it did not run)."""
        return self.results.get(probe, default)

    def __contains__(self, probe: object) -> bool:
        return probe in self.results

    def with_result(self, probe: str, result: Any) -> Measurement:
        """A copy with `probe`'s result set."""
        return Measurement({**self.results, probe: result}, self.calibration_s)

    @property
    def timed(self) -> bool:
        """True when a result holds a Timing (its values then depend on ``calibration_s``)."""
        return any(isinstance(v, Timing) or (isinstance(v, Mapping) and any(isinstance(t, Timing) for t in v.values()))
                   for v in self.results.values())

    @property
    def timings(self) -> dict[str, Timing]:
        """Every Timing by part or probe ("base", "block", "full", "decode"), in one mapping: for reports that
        look at timings whichever probe took them."""
        out = {k: t for k, t in (self.get("latency") or {}).items()}
        for name, v in self.results.items():
            if isinstance(v, Timing):
                out[name] = v
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON data: ``{"probes": {probe name: result as JSON}}`` (the calibration is stored beside it)."""
        return {"probes": {name: _jsonable(v) for name, v in self.results.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], calibration_s: float | None = None) -> Measurement:
        """Read :meth:`to_json` (each result decoded by its probe)."""
        if not isinstance(d.get("probes"), Mapping):
            raise LTSError(f"a measurement record holds its probe results as a mapping under 'probes', got "
                           f"{type(d.get('probes')).__name__}")
        return cls({name: decode(name, v) for name, v in d["probes"].items()}, calibration_s)


class ProbeContext(Protocol):
    """What a probe's ``run`` gets; :class:`lts.cost.measure.ProbeContext` is the implementation.

    ``config``, ``settings`` (MeasureSettings), ``target`` (the Target) always; in the measuring child
    also the services below. ``parts``: the latency parts to time; ``shared``: what one probe leaves for
    a later one of the same child.
    """

    config: Arch
    settings: Any
    target: Any
    parts: tuple[str, ...]
    shared: dict[str, Any]

    def write_graph(self, part: str) -> Path:
        """Write graph `part` ("full", "base", "block", "kv"; quantized on an int8 Target): its path."""

    def session(self, part: str) -> Any:
        """A session of graph `part` (its file gone after)."""

    def peak_memory(self, work: Callable[[], Any]) -> tuple[Any, dict[str, int | None]]:
        """(what `work` returned, ``{"bytes", "sampled_bytes"}``): the peak-memory window around `work`."""

    def reference(self) -> tuple[Any, dict]:
        """The reference graph's session and feeds."""

    def time(self, sess: Any, feeds: dict[str, Any], warm: float = 0.0) -> Timing:
        """`sess` timed beside the reference graph, under the Target's exclusive lock (`warm`: its last run's
        seconds, when it ran before)."""

    def token_feeds(self) -> dict[str, Any]:
        """The forward graph's inputs at ``seq_len``."""

    def feeds_for(self, sess: Any) -> dict[str, Any]:
        """Inputs for the forward part `sess` at ``seq_len``."""

    def decode_feeds(self, past_len: int) -> dict[str, Any]:
        """Inputs of one decoding step with `past_len` cached positions."""

    def generate_to_context(self, sess: Any) -> Any:
        """Prefill then decode on `sess` up to ``context`` tokens."""


GRAPHS = (None, "forward", "parts", "kv")
FORWARD_GRAPHS = ("forward", "parts")  # measured in the first child; "kv" in a second one


@dataclass(frozen=True)
class Probe:
    """One kind of measurement. ``run(ctx)`` returns its result (see the module docstring).

    ``graph``: None (computed in the parent from the config), "forward", "parts" or "kv".
    ``order``: lower runs first within its child (peak-memory probes: 0). ``decode``: stored JSON ->
    result (None: the JSON is the result). ``version`` (a positive integer): bump it when the result
    changes for the same inputs (part of the evaluation cache key; the source of ``run`` is never hashed).
    """

    name: str
    graph: str | None
    run: Callable[[ProbeContext], Any]
    order: int = 100
    decode: Callable[[Any], Any] | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.graph not in GRAPHS:
            raise ValueError(f"{self.name}: graph must be one of {GRAPHS}, got {self.graph!r}")
        check_version(self.name, self.version)

    @property
    def on_target(self) -> bool:
        """True when it measures a graph on the Target in a child process (noisy, machine-specific)."""
        return self.graph is not None

    def definition(self) -> dict[str, Any]:
        """What its result means (part of the cache key): name, graph and version."""
        return {"name": self.name, "graph": self.graph, "version": self.version}


REGISTRY: dict[str, Probe] = {}


def register(probe: Probe) -> Probe:
    """Add (or replace) a probe; returns it. The only step needed to measure something new."""
    parts = [p.name for p in REGISTRY.values() if p.graph == "parts" and p.name != probe.name]
    if probe.graph == "parts" and parts:
        raise ValueError(f"{probe.name}: the 'parts' graph is already measured by {parts[0]!r} (one probe uses it)")
    REGISTRY[probe.name] = probe
    return probe


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def get(name: str) -> Probe:
    try:
        return REGISTRY[name]
    except KeyError:
        raise LTSError(f"unknown probe {name!r} (registered: {', '.join(REGISTRY)})") from None


def decode(name: str, data: Any) -> Any:
    """A stored result of probe `name` in its run-time form (as stored when the probe is not registered)."""
    probe = REGISTRY.get(name)
    return data if probe is None or probe.decode is None or data is None else probe.decode(data)


def ordered(names: Iterable[str]) -> list[Probe]:
    """The probes `names`, in the order they run: by ``order``, then registration."""
    rank = {name: i for i, name in enumerate(REGISTRY)}
    return sorted((get(n) for n in set(names)), key=lambda p: (p.order, rank[p.name]))


def static_probes() -> tuple[str, ...]:
    """The probes without a graph (computed from the config in the parent): they always run."""
    return tuple(sorted(p.name for p in REGISTRY.values() if not p.on_target))


def uses_graph(names: Iterable[str], *graphs: str) -> bool:
    """True when one of the probes `names` measures a graph of `graphs`."""
    return any(get(n).graph in graphs for n in names)


def composable(name: str) -> bool:
    """True when probe `name` measures no candidate's own graph: computed from the config, or (the latency parts)
    composed from part timings stored by shape."""
    return get(name).graph in (None, "parts")


def parts_probe(names: Iterable[str]) -> str | None:
    """The probe among `names` that times the latency parts (graph "parts"), if any."""
    return next((n for n in sorted(names) if get(n).graph == "parts"), None)


# ----------------------------------------------------------------------------- the built-in probes

def _file(ctx: ProbeContext) -> int:
    """Bytes of the fp32 forward graph (exact without writing anything)."""
    return write_onnx(ctx.config.graph_spec("full"), None)


def forward_peak(ctx: ProbeContext, part: str, feeds: dict[str, Any]) -> tuple[Any, dict[str, int | None], float]:
    """(the session, its peak, how long its run took): the peak memory of making a session of forward graph `part`
    and running it once on `feeds` (made by the caller, so before the baseline). Load and run are two windows over
    the same baseline ("load_bytes", "run_bytes"; "bytes" the larger): either may set the peak, and each grows
    with other features of the graph (loading: weights and the folded copies of some; running: activations)."""
    def timed_run() -> float:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        return time.perf_counter() - t0

    with ctx.target.lock(exclusive=False):
        path = ctx.write_graph(part)
        sess, load = ctx.peak_memory(lambda: ctx.target.session(path))
        seconds, run = ctx.peak_memory(timed_run)
        path.unlink()
    peak = _over_baseline(load, run)
    return sess, peak, seconds


def _over_baseline(load: dict[str, Any], run: dict[str, Any]) -> dict[str, int | None]:
    """The peak of two windows, the second's figures moved onto the first's baseline."""
    shift = (run.get("baseline") or 0) - (load.get("baseline") or 0)
    load_bytes, run_bytes = load["bytes"], run["bytes"] + shift
    sampled = [b for b in (load.get("sampled_bytes"), None if run.get("sampled_bytes") is None
                           else run["sampled_bytes"] + shift) if b is not None]
    return {"bytes": max(load_bytes, run_bytes), "sampled_bytes": max(sampled) if sampled else None,
            "load_bytes": load_bytes, "run_bytes": run_bytes}


def _forward_memory(ctx: ProbeContext) -> dict[str, int | None]:
    """Peak memory of making a session of the whole forward graph and running one forward at ``seq_len``. The
    session stays in ``ctx.shared`` for a whole-graph timing in the same child (written and loaded once; its run
    here is that timing's first warm-up)."""
    sess, peak, seconds = forward_peak(ctx, "full", ctx.token_feeds())
    ctx.shared["full"] = (sess, seconds)
    return peak


def _generation_memory(ctx: ProbeContext) -> dict[str, int | None]:
    """Peak memory of a generation to ``context`` tokens (prefill, then decoding), on the first session of its
    child, like generate_text.py's only one; the session is left in ``ctx.shared`` for "decode"."""
    with ctx.target.lock(exclusive=False):
        path = ctx.write_graph("kv")
        sess, peak = ctx.peak_memory(lambda: ctx.generate_to_context(ctx.target.session(path)))
        path.unlink()
    ctx.shared["kv_session"] = sess
    return peak


def _decode(ctx: ProbeContext) -> Timing:
    """One decoding step at a KV cache of ``context - 1`` positions, timed beside the reference graph."""
    sess = ctx.shared.pop("kv_session", None)  # the generation probe's session, when it ran
    if sess is None:
        sess = ctx.session("kv")
    return ctx.time(sess, ctx.decode_feeds(ctx.settings.context - 1))


def _latency(ctx: ProbeContext) -> dict[str, Timing]:
    """A Timing of each part in ``ctx.parts``, each beside the reference graph."""
    ctx.reference()  # made before the timed sessions
    out = {}
    for part in ctx.parts:
        sess, warm = ctx.shared.pop(part, None) or (ctx.session(part), 0.0)
        out[part] = ctx.time(sess, ctx.feeds_for(sess), warm)
        del sess
    return out


def _timing(data: Any) -> Timing:
    return data if isinstance(data, Timing) else Timing(**data)


def _timings(data: Any) -> dict[str, Timing]:
    return {part: _timing(t) for part, t in data.items()}


register(Probe("file", None, _file))
register(Probe("memory", "forward", _forward_memory, order=0))
register(Probe("latency", "parts", _latency, order=20, decode=_timings))
# version 2: the KV graph's attention is ONNX Runtime's fused MultiHeadAttention and its c_proj + residual + ln_2
# one SkipLayerNormalization (the forward graphs, and so the latency table, did not change)
register(Probe("generation_memory", "kv", _generation_memory, order=0, version=2))
register(Probe("decode", "kv", _decode, order=10, decode=_timing, version=2))
