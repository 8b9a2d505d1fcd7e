"""The one entry point that scores an architecture, with a persistent store.

``Evaluator.evaluate(config)`` returns an :class:`EvalResult` holding every registered
objective (``lts.cost.objectives``): the proxy (analytic), the graph's file size, and,
when the settings measure, latency and peak memory measured on the Target in an isolated
child process (``lts.cost.measure``). With ``latency_mode="composed"`` (default) latency is
``base + n_layer * block``: the embeddings + LM-head graph and a one-block graph are timed
separately and cached by shape, so a candidate costs at most one block timing however
deep it is; ``"full"`` times the whole graph.

Only successes are stored, the moment they exist, keyed by (archid, settings + objective
definitions + the "evaluation" version, Target fingerprint), the settings part made by
:func:`lts.core.cachekeys.cache_key`: a cached result comes back in ~1 ms, a changed objective
(its ``version``) or measurement (a bump in ``cachekeys.VERSIONS``) is never served a stale value,
an edit of a comment or docstring re-measures nothing, and a failure (a timeout, an out-of-memory
kill, a full disk) is never served at all: the next run tries again. A stored result keeps its raw
measurement (timings with the reference graph's timing beside them), and its values are recomputed
at the evaluator's calibration
(:meth:`Evaluator.calibrate`), so a latency measured on another day is reported at today's speed
of the machine.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from lts.core import faults
from lts.core.cachekeys import cache_key, versions
from lts.core.errors import JobFailed, LTSError
from lts.core.fileio import nan_to_none
from lts.core.settings import Choice, Settings, setting
from lts.cost import objectives, probes
from lts.cost.child import MeasureError
from lts.cost.measure import DEFAULT_PROBES, measure_architecture, measure_reference
from lts.cost.objectives import DEFAULT_OBJECTIVES, REGISTRY, Measurement, Timing, probes_for
from lts.cost.settings import MeasureSettings
from lts.cost.store import SQLiteStore, Store, default_cache_path
from lts.cost.table import measure_parts
from lts.cost.target import CPUTarget, Target, check_measurable
from lts.cost.timing import REFERENCE
from lts.families import DEFAULT_FAMILY, Arch, arch_from_dict, to_record

LATENCY_MODES = ("composed", "full")

__all__ = ["EvalSettings", "EvalResult", "EvalTask", "Evaluator", "LATENCY_MODES", "DEFAULT_OBJECTIVES", "TaskOutput",
           "parts_objectives",
           "default_cache_path", "run_task"]


@dataclass(frozen=True)
class EvalSettings(Settings):
    """Everything that changes an evaluation's values (hashed into the cache key)."""

    measure_settings: MeasureSettings = field(default_factory=MeasureSettings)
    on_target: bool = True  # False: proxy + file size only (deterministic, no child process)
    latency_mode: str = setting("composed", "composed: base + n_layer x block, timings cached per shape (fast); "
                                            "full: the whole graph", Choice(LATENCY_MODES))
    target: Target = field(default_factory=CPUTarget)
    # The probes to run (names in lts.cost.probes), derived from the objectives and budgets asked for
    # (objectives.probes_for); without measuring, only the graph-less ones run (run_probes).
    probes: tuple[str, ...] = DEFAULT_PROBES

    def check(self) -> None:
        if isinstance(self.probes, str):
            raise LTSError(f"probes must be a sequence of probe names, got {self.probes!r}")
        object.__setattr__(self, "probes", tuple(sorted({probes.get(n).name for n in self.probes})))
        if self.on_target:
            check_measurable()

    @classmethod
    def create(cls, on_target: bool = True, latency_mode: str = "composed", threads: int | None = None,
               target: Target | None = None, objectives: Iterable[str] | None = None,
               **measure_settings: Any) -> EvalSettings:
        """Flat keywords: seq_len=, context=, timeout_s=, ... for the MeasureSettings, threads= for the (CPU) Target.

        `objectives` (names; objectives and budgets alike) decide the probes; None: the default objectives'.
        """
        target = target or (CPUTarget() if threads is None else CPUTarget(threads=threads))
        chosen = DEFAULT_PROBES if objectives is None else probes_for(objectives)
        return cls(MeasureSettings(**{k: v for k, v in measure_settings.items() if v is not None}), on_target,
                   latency_mode, target, chosen)

    @property
    def run_probes(self) -> tuple[str, ...]:
        """The probes that run: all of ``probes`` when measuring, else only the graph-less ones."""
        return self.probes if self.on_target else tuple(n for n in self.probes if not probes.get(n).on_target)

    @property
    def generation(self) -> bool:
        """True when a probe that runs measures the generation graph (then ``measure_settings.context`` matters)."""
        return probes.uses_graph(self.run_probes, "kv")

    def per_candidate(self) -> tuple[str, ...]:
        """The probes that run that measure each candidate's own graph (not composed from stored parts): those
        on the forward and generation graphs, and the latency parts when ``latency_mode`` is "full"."""
        full = self.latency_mode == "full"
        return tuple(n for n in self.run_probes
                     if not probes.composable(n) or (full and probes.get(n).graph == "parts"))

    @property
    def composes_latency(self) -> bool:
        """True when latency is timed, composed from part timings stored by shape (``latency_mode`` composed)."""
        return self.on_target and self.latency_mode == "composed" and probes.parts_probe(self.run_probes) is not None

    @property
    def forward(self) -> bool:
        """True when a probe that runs measures the forward graph or its latency parts."""
        return probes.uses_graph(self.run_probes, *probes.FORWARD_GRAPHS)

    @property
    def seq_len(self) -> int:
        return self.measure_settings.seq_len

    @property
    def threads(self) -> int:
        return self.target.threads

    def measure_key(self) -> str:
        """What a timing depends on (the shape timings' key; sha1 hex): the MeasureSettings, the Target's
        settings, the reference graph, and the versions of the graphs and of the measurement (and of the
        quantizer for int8 graphs)."""
        return cache_key("evaluation", uses=tuple(self.versions()), measure_settings=self.measure_settings.key(),
                         target=self.target.key(), reference=REFERENCE.to_dict())

    def versions(self) -> dict[str, int]:
        """The cache versions every key of these settings is made with (recorded beside what is stored, so that
        ``lts cache prune`` can tell what no key made now reaches)."""
        uses = ("int8",) if self.target.precision == "int8" else ()  # fp32 figures do not depend on it
        return versions("evaluation", uses)

    def key(self) -> str:
        """What a whole result depends on (sha1 hex): the above, the mode, and every objective's definition."""
        return cache_key("evaluation", measure_key=self.measure_key(), on_target=self.on_target,
                         latency_mode=self.latency_mode, probes=[probes.get(n).definition() for n in self.run_probes],
                         objectives=objectives.definitions())


@dataclass(frozen=True)
class EvalResult:
    """One architecture's objectives (``values``, keyed by objective name) and how they were obtained."""

    archid: str
    config: Arch
    values: Mapping[str, Any]
    eval_seconds: float = 0.0
    status: str = "ok"
    cached: bool = False
    measurement: Measurement = field(default_factory=Measurement)
    hardware: str = ""  # fingerprint id of the machine that computed it ("": not recorded)
    node: str = ""      # that machine's host name

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __getitem__(self, name: str) -> Any:
        """The value of objective `name` (NaN when it was not obtained)."""
        return self.values.get(name, math.nan)

    def __getattr__(self, name: str) -> Any:  # result.onnx_latency_s, for every registered objective
        if name in REGISTRY:
            return self.values.get(name, math.nan)
        raise AttributeError(name)

    def tolerance(self, name: str) -> float:
        """How far objective `name` may move on a re-measurement (its measured noise; 0 for exact values)."""
        return REGISTRY[name].tolerance(self.config, self.measurement)

    def objectives(self) -> dict[str, Any]:
        """Every registered objective (registry order), then eval_seconds and status."""
        out = {name: self[name] for name in REGISTRY}
        out.update(eval_seconds=self.eval_seconds, status=self.status)
        return out

    def with_whole_graph_latency(self, whole: EvalResult | None) -> EvalResult:
        """This (composed) result with the latency figures of `whole`, the same architecture timed as one graph
        (``Evaluator.whole_graph_evaluator()``); unchanged when there is none or either failed."""
        probe = probes.parts_probe(probes.REGISTRY)
        if whole is None or not whole.ok or not self.ok or probe is None:
            return self
        values = {**self.values, **{name: whole.values.get(name) for name in parts_objectives()}}
        measurement = self.measurement.with_result(probe, whole.measurement.get(probe))
        return replace(self, values=values, measurement=measurement)

    def to_row(self) -> dict[str, Any]:
        return {"archid": self.archid, **self.config.to_dict(), **self.objectives(), "cached": self.cached,
                "hardware": self.hardware, "node": self.node}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (NaN as null): values, how they were obtained, and the raw measurement behind them."""
        return {"archid": self.archid, "config": to_record(self.config), "values": nan_to_none(self.values),
                "eval_seconds": self.eval_seconds, "status": self.status, "measurement": self.measurement.to_json(),
                "calibration_s": self.measurement.calibration_s, "hardware": self.hardware, "node": self.node}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], cached: bool = False) -> EvalResult:
        """The result as recorded (values as they were computed then)."""
        values = {k: (math.nan if v is None else v) for k, v in d["values"].items()}
        m = Measurement.from_json(d.get("measurement") or {"probes": {}}, d.get("calibration_s"))
        config = arch_from_dict(d["config"], source="a stored evaluation")
        return cls(d["archid"], config, values, d["eval_seconds"], d["status"], cached, m,
                   d.get("hardware", ""), d.get("node", ""))


def parts_objectives() -> tuple[str, ...]:
    """The objectives read from the latency parts probe: what a composed latency is and a whole timing replaces."""
    probe = probes.parts_probe(probes.REGISTRY)
    return tuple(name for name, o in REGISTRY.items() if probe is not None and o.probe == probe)


class Evaluator:
    """Scores architectures: the store first, then proxy + (optionally) a measurement child on the Target.

    ``calibration_s`` is the reference graph's latency that every latency is reported at (see
    ``lts.cost.timing``); None: measured once, lazily, by :meth:`calibrate`.
    """

    def __init__(self, settings: EvalSettings | None = None, cache_path: str | os.PathLike | None = None,
                 store: Store | None = None, calibration_s: float | None = None, hardware: Mapping[str, Any] | None
                 = None, time_reference: Callable[[MeasureSettings, Target], Timing] | None = None) -> None:
        self.settings = settings or EvalSettings()
        self.target = self.settings.target
        self.cache = store if store is not None else SQLiteStore(cache_path)
        # The machine whose figures this evaluator stores and serves: this one, or (Ray) the fingerprint
        # of the cluster's nodes that measure; time_reference times the reference graph on that hardware.
        self.hardware = dict(hardware) if hardware is not None else self.target.fingerprint()
        self.calibration_s = calibration_s
        self.time_reference = time_reference or measure_reference

    def whole_graph_evaluator(self) -> Evaluator | None:
        """An evaluator that times the whole graph where this one composes latency from parts (same store,
        calibration and hardware), or None when this one times whole already or times no latency."""
        s = self.settings
        if not s.composes_latency:
            return None
        keep = tuple(n for n in s.run_probes if probes.composable(n))
        return Evaluator(replace(s, latency_mode="full", probes=keep), store=self.cache,
                         calibration_s=self.calibration_s, hardware=self.hardware, time_reference=self.time_reference)

    def calibrate(self) -> float | None:
        """The reference graph's latency now (measured once per evaluator; None when nothing is measured)."""
        if self.calibration_s is None and self.settings.on_target:
            # Not bound by the candidates' timeout (a tiny --timeout fails candidates, not the run).
            settings = replace(self.settings.measure_settings,
                               timeout_s=max(self.settings.measure_settings.timeout_s, 120.0))
            try:
                self.calibration_s = self.time_reference(settings, self.target).median_s
            except MeasureError as exc:
                raise JobFailed(f"cannot time the reference graph on {self.target.describe()}: {exc}") from None
        return self.calibration_s

    def _result_key(self, archid: str) -> tuple[str, str, str]:
        return (archid, self.settings.key(), self.hardware["id"])

    def _timing_key(self, config: Arch, part: str) -> str:
        # keyed by the part's role and shape: every architecture with a block of that shape shares its timing,
        # homogeneous ("block") or per-layer ("block:<shape>") alike
        shape = config.part_key(part)
        part = "base" if part == "base" else "block"
        if config.family.name != DEFAULT_FAMILY:
            part = f"{config.family.name}:{part}"
        probe = probes.get(probes.parts_probe(probes.REGISTRY) or "latency")  # its version keys its timings
        return f"{probe.name}.{probe.version}:{part}:{shape}:{self.settings.measure_key()}:{self.hardware['id']}"

    def cached(self, config: Arch) -> EvalResult | None:
        """The stored success for `config` under these settings and hardware, at this evaluator's calibration."""
        raw = self.cache.get("results", self._result_key(config.archid))
        if not raw:
            return None
        stored = EvalResult.from_json(json.loads(raw))
        if not stored.ok:  # a failure is never served, whoever stored it
            return None
        return self.rescaled(stored, cached=True)

    def rescaled(self, result: EvalResult, cached: bool | None = None) -> EvalResult:
        """`result` with its values recomputed from its measurement at this evaluator's calibration."""
        if not result.ok:
            return result
        m = result.measurement
        if m.timed:
            m = replace(m, calibration_s=self.calibrate())
        return replace(result, values=self._values(result.config, m), measurement=m,
                       cached=result.cached if cached is None else cached)

    def evaluate(self, config: Arch) -> EvalResult:
        """Return the cached result, or compute, store and return it. Never raises for a failed evaluation."""
        hit = self.cached(config)
        if hit is not None:
            return hit
        result = self.compute(config)
        self.store(result)
        return result

    def store(self, result: EvalResult) -> None:
        """Keep a success for later runs (a failure is only recorded by the run that met it)."""
        if result.ok and not result.cached:
            self.cache.put("results", self._result_key(result.archid), json.dumps(result.to_json()),
                           versions=self.settings.versions())

    def compute(self, config: Arch) -> EvalResult:
        """Evaluate without looking at the results store (shape timings are still reused).

        Never raises: whatever goes wrong (a measurement error, a crash or hang of the measuring
        process, a bug in an objective) is a failed result whose status holds the reason.
        Equivalent to ``finish(t, run_task(t))`` with ``t = task(config)``, which is how an
        engine that computes elsewhere (Ray) splits it.
        """
        try:
            t = self.task(config)
        except Exception as exc:  # noqa: BLE001 - e.g. the reference graph cannot be timed: this candidate fails
            return self.failed(config, _reason(exc))
        return self.finish(t, run_task(t))

    def task(self, config: Arch) -> EvalTask:
        """What must be computed for `config` (here, on the driver: calibration, shape timings already stored)."""
        s = self.settings
        if not s.on_target:
            return EvalTask(config, s, (), {})
        self.calibrate()
        if probes.parts_probe(s.run_probes) is None:  # no latency asked for
            parts: dict[str, Timing | None] = {}
        elif s.latency_mode == "full":
            parts = {"full": None}
        else:
            parts = {p: self.cached_timing(config, p) for p in ("base", *config.block_parts())}
        return EvalTask(config, s, tuple(p for p, t in parts.items() if t is None),
                        {p: t for p, t in parts.items() if t is not None})

    def finish(self, task: EvalTask, out: TaskOutput) -> EvalResult:
        """The result of `task` from what :func:`run_task` returned (here: new shape timings are stored)."""
        config = task.config
        try:
            if out.error is not None:
                return self.failed(config, out.error, out.seconds, out.hardware, out.node)
            m = out.measurement
            assert m is not None
            if task.settings.on_target:
                if out.hardware != self.hardware["id"]:
                    return self.failed(config, f"measured on other hardware ({out.hardware} on {out.node}, not "
                                               f"{self.hardware['id']})", out.seconds, out.hardware, out.node)
                timed = probes.parts_probe(task.settings.run_probes)
                if timed is not None:  # its new shape timings are stored, and composed with the known ones
                    new = m.get(timed) or {}
                    for p, timing in new.items():
                        if p == "base" or p in config.block_parts():
                            self.cache.put("timings", (self._timing_key(config, p),), json.dumps(asdict(timing)),
                                           versions=self.settings.versions())
                    if new or task.known:
                        m = m.with_result(timed, {**task.known, **new})
                m = replace(m, calibration_s=self.calibration_s)
            return EvalResult(config.archid, config, self._values(config, m), out.seconds, measurement=m,
                              hardware=out.hardware, node=out.node)
        except Exception as exc:  # noqa: BLE001 - an objective that cannot be computed fails this candidate only
            return self.failed(config, _reason(exc), out.seconds, out.hardware, out.node)

    def failed(self, config: Arch, reason: str, seconds: float = 0.0, hardware: str = "",
               node: str = "") -> EvalResult:
        return EvalResult(config.archid, config, self._values(config, Measurement(), safe=True), seconds,
                          f"failed: {reason.strip()[:300]}", hardware=hardware, node=node)

    def _values(self, config: Arch, m: Measurement, safe: bool = False) -> dict[str, Any]:
        values = {}
        for name, o in REGISTRY.items():
            try:
                values[name] = o.value(config, m)
            except Exception:
                if not safe:
                    raise
                values[name] = math.nan
        return values

    def untimed_parts(self, configs: Iterable[Arch]) -> list[tuple[Arch, str]]:
        """The latency parts of `configs` whose shape is not timed yet under these settings, one per shape: what
        :meth:`time_parts` measures. Empty when nothing is composed from parts here (latency not asked for, timed
        whole, nothing measured, or measured on other hardware than this machine: a cluster's nodes time their own)."""
        if not self.settings.composes_latency or self.hardware["id"] != self.target.fingerprint()["id"]:
            return []
        todo: dict[str, tuple[Arch, str]] = {}
        for config in configs:
            for part in ("base", *config.block_parts()):
                key = self._timing_key(config, part)
                if key not in todo and self.cache.get("timings", (key,)) is None:
                    todo[key] = (config, part)
        return list(todo.values())

    def time_parts(self, items: Sequence[tuple[Arch, str]]) -> Iterator[tuple[tuple[Arch, str], str | None]]:
        """Time the parts `items` (:meth:`untimed_parts`), many per measuring child, storing each timing the moment
        it exists (a killed run loses none); yields ``(item, None)`` for each stored and ``(item, reason)`` for
        each that failed (not stored: the candidates that need it time it in their own child, again)."""
        probe = probes.parts_probe(self.settings.run_probes)
        if not items or probe is None:
            return
        self.calibrate()
        for i, out in measure_parts(items, self.settings.measure_settings, self.target, probe):
            config, part = items[i]
            if isinstance(out, Timing):
                self.cache.put("timings", (self._timing_key(config, part),), json.dumps(asdict(out)),
                               versions=self.settings.versions())
                yield items[i], None
            else:
                yield items[i], out

    def cached_timing(self, config: Arch, part: str) -> Timing | None:
        """The stored timing of `config`'s "base" or block part (``config.block_parts()``) under these settings."""
        raw = self.cache.get("timings", (self._timing_key(config, part),))
        return Timing(**json.loads(raw)) if raw else None

    def _describe(self) -> str:
        here = self.target.describe()
        if self.hardware.get("id") == self.target.fingerprint()["id"]:
            return here
        hw = self.hardware  # measured elsewhere (Ray nodes of another kind than this machine)
        weights = "" if self.target.precision == "fp32" else f", {self.target.precision} weights"
        return (f"{here.split(', ')[0]}, {self.target.threads} threads{weights}, on nodes of hardware {hw.get('id')}: "
                f"{hw.get('cpu') or hw.get('machine')} ({hw.get('cores')} cores, {hw.get('system')})")

    def conditions(self) -> dict[str, Any]:
        s = self.settings
        return {"seq_len": s.seq_len, "threads": s.threads, "batch": 1, "latency_mode": s.latency_mode,
                **({"context": s.measure_settings.context} if s.generation else {}),
                "target": self.target.name, "precision": self.target.precision, "describe": self._describe(),
                "hardware": self.hardware,
                "calibration_ms": None if self.calibration_s is None else round(self.calibration_s * 1e3, 4)}


@dataclass(frozen=True)
class EvalTask:
    """One candidate's work, ready to run anywhere: the config, the settings, what to measure, what is known."""

    config: Arch
    settings: EvalSettings
    parts: tuple[str, ...]          # latency parts still to time ("full", or "base"/"block" not stored yet)
    known: Mapping[str, Timing]     # shape timings already stored, reused (part of the "parts" probe's result)


@dataclass(frozen=True)
class TaskOutput:
    """What :func:`run_task` sends back: the raw measurement or the reason it failed, and where it ran."""

    measurement: Measurement | None
    error: str | None
    seconds: float
    hardware: str
    node: str


def run_task(task: EvalTask) -> TaskOutput:
    """Compute a task on this machine, touching no store (so it runs on a Ray worker as well as here).

    Never raises: a failure is returned with its reason.
    """
    t0 = time.perf_counter()
    s, config = task.settings, task.config
    hardware, node = s.target.fingerprint()["id"], platform.node()
    try:
        faults.point("evaluate", config.archid)
        # unmeasured: graph-less probes only
        m = measure_architecture(config, s.measure_settings, s.target, s.run_probes, parts=task.parts)
        return TaskOutput(m, None, time.perf_counter() - t0, hardware, node)
    except Exception as exc:  # noqa: BLE001 - one candidate's failure must not end the search
        return TaskOutput(None, _reason(exc), time.perf_counter() - t0, hardware, node)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (MeasureError, LTSError)) else f"{type(exc).__name__}: {exc}"
