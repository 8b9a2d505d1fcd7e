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

import numpy as np

from lts.core import faults
from lts.core.cachekeys import cache_key, versions
from lts.core.errors import JobFailed, LTSError
from lts.core.fileio import nan_to_none
from lts.core.settings import Choice, Settings, setting
from lts.cost import objectives, probes
from lts.cost.child import MeasureError
from lts.cost.features import arch_features, part_features
from lts.cost.measure import DEFAULT_PROBES, measure_architecture, measure_reference
from lts.cost.objectives import DEFAULT_OBJECTIVES, REGISTRY, Measurement, Timing, probes_for
from lts.cost.predict import (
    LATENCY_COLUMNS,
    MEMORY_COLUMNS,
    PREDICTABLE,
    TOLERANCE,
    Samples,
    design,
    needed,
    sample_value,
)
from lts.cost.settings import MeasureSettings
from lts.cost.store import SQLiteStore, Store, default_cache_path
from lts.cost.table import measure_parts
from lts.cost.target import CPUTarget, Target, check_measurable
from lts.cost.timing import REFERENCE
from lts.families import DEFAULT_FAMILY, Arch, arch_from_dict, to_record

LATENCY_MODES = ("composed", "full")
EXTRAPOLATION = 1.5  # a prediction this many times less sure than the fit's own error is an extrapolation
ACTIVE_BATCH = 8  # uncertain shapes (and peaks) measured per round of active sampling, the most uncertain first
TIMING_FIELDS = frozenset(Timing.__dataclass_fields__)  # a stored timing also holds its graph's features
COSTS = ("measured", "predicted")

__all__ = ["EvalSettings", "EvalResult", "EvalTask", "Evaluator", "LATENCY_MODES", "DEFAULT_OBJECTIVES", "TaskOutput",
           "default_cache_path", "run_task"]


@dataclass(frozen=True)
class EvalSettings(Settings):
    """Everything that changes an evaluation's values (hashed into the cache key)."""

    measure_settings: MeasureSettings = field(default_factory=MeasureSettings)
    on_target: bool = True  # False: proxy + file size only (deterministic, no child process)
    latency_mode: str = setting("composed", "composed: base + n_layer x block, timings cached per shape (fast); "
                                            "full: the whole graph", Choice(LATENCY_MODES))
    costs: str = setting("measured", "measured: every cost measured (latency composed from timed parts per "
                                     "--latency-mode); predicted: latencies of part shapes not timed and peak memory "
                                     "predicted from models fitted on what was measured (lts/cost/predict.py)",
                         Choice(COSTS))
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
               target: Target | None = None, objectives: Iterable[str] | None = None, costs: str = "measured",
               **measure_settings: Any) -> EvalSettings:
        """Flat keywords: seq_len=, context=, timeout_s=, ... for the MeasureSettings, threads= for the (CPU) Target.

        `objectives` (names; objectives and budgets alike) decide the probes; None: the default objectives'.
        """
        target = target or (CPUTarget() if threads is None else CPUTarget(threads=threads))
        chosen = DEFAULT_PROBES if objectives is None else probes_for(objectives)
        return cls(MeasureSettings(**{k: v for k, v in measure_settings.items() if v is not None}), on_target,
                   latency_mode, costs, target, chosen)

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
        return tuple(n for n in self.run_probes if n not in self.predicted
                     and (not probes.composable(n) or (full and probes.get(n).graph == "parts")))

    @property
    def composes_latency(self) -> bool:
        """True when latency is timed, composed from part timings stored by shape (``latency_mode`` composed)."""
        return self.on_target and self.latency_mode == "composed" and probes.parts_probe(self.run_probes) is not None

    @property
    def predicted(self) -> tuple[str, ...]:
        """The probes whose results are predicted from fitted models (``costs`` predicted): the latency parts
        (when composed) and the forward graph's peak memory; the others are measured."""
        if not self.on_target or self.costs != "predicted":
            return ()
        return tuple(n for n in self.run_probes if n in PREDICTABLE and (n != probes.parts_probe(self.run_probes)
                                                                         or self.composes_latency))

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
                         latency_mode=self.latency_mode, **({"predicted": self.predicted} if self.predicted else {}),
                         probes=[probes.get(n).definition() for n in self.run_probes],
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

    def with_whole_graph(self, whole: EvalResult | None) -> EvalResult:
        """This (composed or predicted) result with the figures of `whole`, the same architecture measured as one
        graph (``Evaluator.whole_graph_evaluator()``): every objective of a probe `whole` measured; unchanged when
        there is none or either failed."""
        if whole is None or not whole.ok or not self.ok:
            return self
        measured = [n for n in whole.measurement.results if probes.get(n).on_target]
        names = [name for name, o in REGISTRY.items() if o.probe in measured]
        measurement = self.measurement
        for n in measured:
            measurement = measurement.with_result(n, whole.measurement.get(n))
        return replace(self, values={**self.values, **{name: whole.values.get(name) for name in names}},
                       measurement=measurement)

    @property
    def predicted(self) -> bool:
        """True when a figure of it was predicted, not measured (``EvalSettings.costs`` predicted)."""
        return is_predicted(self.measurement)

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


def _part_role(config: Arch, part: str) -> str:
    """How a part's timing key names its role: "base", "block" (every block shape) or "whole" (the whole forward
    graph, "full"), prefixed by the family when it is not the default one (the latency models fit one role's
    timings)."""
    role = {"base": "base", "full": "whole"}.get(part, "block")
    return role if config.family.name == DEFAULT_FAMILY else f"{config.family.name}:{role}"


def whole_objectives(settings: EvalSettings) -> tuple[str, ...]:
    """The objectives a search under `settings` composes or predicts, and a whole measurement replaces."""
    probe = probes.parts_probe(settings.run_probes)
    redone = {*settings.predicted, *((probe,) if settings.composes_latency and probe else ())}
    return tuple(name for name, o in REGISTRY.items() if o.probe in redone)


def is_predicted(m: Measurement) -> bool:
    """True when `m` holds a predicted figure: a part Timing of no repeats, or a peak with its ``predicted``
    uncertainty."""
    latency = m.get("latency") or {}
    return any(t.repeats == 0 for t in latency.values()) or any(
        isinstance(v, Mapping) and "predicted" in v for v in m.results.values())


class Evaluator:
    """Scores architectures: the store first, then proxy + (optionally) a measurement child on the Target.

    ``calibration_s`` is the reference graph's latency that every latency is reported at (see
    ``lts.cost.timing``); None: measured once, lazily, by :meth:`calibrate`. ``own_calibration``: none is
    measured; the first result's own reference (the one timed beside its whole graph, or stored with it) is the
    calibration, so its latency is the median as timed (``lts evaluate``: one architecture, one moment).
    """

    def __init__(self, settings: EvalSettings | None = None, cache_path: str | os.PathLike | None = None,
                 store: Store | None = None, calibration_s: float | None = None, hardware: Mapping[str, Any] | None
                 = None, time_reference: Callable[[MeasureSettings, Target], Timing] | None = None,
                 own_calibration: bool = False) -> None:
        self.settings = settings or EvalSettings()
        self.target = self.settings.target
        self.cache = store if store is not None else SQLiteStore(cache_path)
        # The machine whose figures this evaluator stores and serves: this one, or (Ray) the fingerprint
        # of the cluster's nodes that measure; time_reference times the reference graph on that hardware.
        self.hardware = dict(hardware) if hardware is not None else self.target.fingerprint()
        self.calibration_s = calibration_s
        self.own_calibration = own_calibration
        self.time_reference = time_reference or measure_reference
        # what the cost models fit on: the timings and peaks measured under these settings on this hardware
        self.samples = Samples(self.cache, f":{self.settings.measure_key()}:{self.hardware['id']}")

    def whole_graph_evaluator(self) -> Evaluator | None:
        """An evaluator that times the whole graph where this one composes latency from parts (same store,
        calibration and hardware), or None when this one times whole already or times no latency."""
        s = self.settings
        if not s.composes_latency and not s.predicted:
            return None
        keep = tuple(n for n in s.run_probes if probes.composable(n) or n in s.predicted)
        return Evaluator(replace(s, latency_mode="full", costs="measured", probes=keep), store=self.cache,
                         calibration_s=self.calibration_s, hardware=self.hardware, time_reference=self.time_reference)

    def calibrate(self) -> float | None:
        """The reference graph's latency now (measured once per evaluator; None when nothing is measured)."""
        if self.calibration_s is None and self.settings.on_target and not self.own_calibration:
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
        shape = config.archid if part == "full" else config.part_key(part)
        probe = probes.get(probes.parts_probe(probes.REGISTRY) or "latency")  # its version keys its timings
        return (f"{probe.name}.{probe.version}:{_part_role(config, part)}:{shape}:{self.settings.measure_key()}:"
                f"{self.hardware['id']}")

    def cached(self, config: Arch) -> EvalResult | None:
        """The stored success for `config` under these settings and hardware, at this evaluator's calibration."""
        raw = self.cache.get("results", self._result_key(config.archid))
        if not raw:
            return None
        stored = EvalResult.from_json(json.loads(raw))
        if not stored.ok:  # a failure is never served, whoever stored it
            return None
        self._calibrate_from(stored.measurement)
        return self.rescaled(stored, cached=True)

    def _calibrate_from(self, m: Measurement) -> None:
        """With ``own_calibration``: the calibration, if none yet, is `m`'s (stored with it) or the reference timed
        beside its whole graph (or its first timing)."""
        if self.own_calibration and self.calibration_s is None:
            timings = m.timings
            first = timings.get("full") or next(iter(timings.values()), None)
            self.calibration_s = m.calibration_s or (first.reference_s if first else None)

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
        """Keep a success for later runs (a failure is only recorded by the run that met it; a prediction only by
        its run: the models it came from change as they are refitted)."""
        if result.ok and not result.cached and not result.predicted:
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

    def without_measuring(self, config: Arch) -> EvalResult | None:
        """`config`'s result from what the store holds and the models predict, measuring nothing: a figure that
        would need a measurement (a peak the model cannot predict yet, a probe measured per candidate) is left
        out (NaN); None when its latency parts are neither timed nor predictable."""
        t = self.task(config)
        if t.parts:
            return None
        keep = tuple(n for n in t.settings.probes if not probes.get(n).on_target or n in t.predicted
                     or n == probes.parts_probe(t.settings.probes))
        t = replace(t, settings=replace(t.settings, probes=keep))
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
        elif (whole := self._predicted_timing(config, "full")) is not None:
            parts = {"full": whole}  # the whole graph's own model: no composition bias
        else:
            parts = {p: self.cached_timing(config, p) or self._predicted_timing(config, p)
                     for p in ("base", *config.block_parts())}
        predicted = {}
        if "memory" in s.predicted and (peak := self.samples.peak(arch_features(config, s.seq_len))):
            predicted["memory"] = {"bytes": int(peak[0]), "sampled_bytes": None, "predicted": peak[1]}
        return EvalTask(config, s, tuple(p for p, t in parts.items() if t is None),
                        {p: t for p, t in parts.items() if t is not None}, predicted)

    def _predicted_timing(self, config: Arch, part: str) -> Timing | None:
        """A Timing of `part` predicted from the table's fit for its role (no repeats: predicted; ``cv`` its
        relative uncertainty), at this evaluator's calibration; None when latency is not predicted here or too few
        shapes of its role are timed yet."""
        if "latency" not in self.settings.predicted:
            return None
        if part == "full":  # the whole graph's model (fitted on whole timings: fronts, lts evaluate), where it is sure
            model = self.samples.fit(self._role(config, part))
            units = None if model is None else model.predict(arch_features(config, self.settings.seq_len))
            if units is None or not units[1] <= EXTRAPOLATION * model.sigma:
                return None
        else:
            units = self.samples.predict(self._role(config, part),
                                         part_features(config, part, self.settings.seq_len))
        if units is None or not math.isfinite(units[1]):
            return None
        calibration = self.calibrate()
        return Timing(median_s=units[0] * calibration, cv=units[1], repeats=0, reference_s=calibration)

    @staticmethod
    def _role(config: Arch, part: str) -> str:
        """The sample kind of `part`'s timings: "latency:" and the part's role as its timing key names it."""
        return f"latency:{_part_role(config, part)}"

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
                if timed is not None:  # its new timings are stored (parts, or the whole graph), composed with the known
                    new = m.get(timed) or {}
                    for p, timing in new.items():  # only what was measured: task.parts ("base", blocks, or "full")
                        self._put_timing(config, p, timing)
                    if new or task.known:
                        m = m.with_result(timed, {**task.known, **new})
                for name, result in task.predicted.items():
                    m = m.with_result(name, result)
                self._put_memory_sample(config, m)
                self._calibrate_from(m)
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

    def to_measure(self, configs: Iterable[Arch]) -> tuple[list[tuple[Arch, str]], list[Arch]]:
        """What the cost models need measured before `configs`' costs are predicted (``costs`` predicted): the part
        shapes to time (:meth:`time_parts`) and the architectures whose whole peak to measure
        (:meth:`measure_peaks`). While a model has fewer samples than it needs (``predict.needed``), a design
        spread over the candidates' features; then those whose prediction is more uncertain than
        ``predict.TOLERANCE``, the most uncertain first, at most ``ACTIVE_BATCH`` of each kind. Empty when
        nothing is predicted here (the candidates' own shapes are then all timed: :meth:`untimed_parts`)."""
        configs = list({c.archid: c for c in configs}.values())
        parts: list[tuple[Arch, str]] = []
        if "latency" in self.settings.predicted:
            roles: dict[str, list[tuple[Arch, str]]] = {}
            for config, part in self.untimed_parts(configs):
                roles.setdefault(self._role(config, part), []).append((config, part))
            for role, items in roles.items():
                feats = [part_features(c, p, self.seq_len) for c, p in items]
                parts += [items[i] for i in self._pick(role, feats, LATENCY_COLUMNS)]
        peaks: list[Arch] = []
        if "memory" in self.settings.predicted:
            todo = [c for c in configs if self.cache.get("timings", (self._memory_key(c),)) is None]
            peaks = [todo[i] for i in self._pick("memory", [arch_features(c, self.seq_len) for c in todo],
                                                  MEMORY_COLUMNS)]
        return parts, peaks

    @property
    def seq_len(self) -> int:
        return self.settings.seq_len

    def _pick(self, kind: str, feats: list[dict[str, float]], columns: Sequence[str]) -> list[int]:
        """Indices of `feats` (candidates not measured) to measure for the model of `kind` (:meth:`to_measure`)."""
        if not feats:
            return []
        rows = self.samples.rows(kind)
        X = np.array([[1.0, *(f.get(c, 0.0) for c in columns)] for f in (*feats, *(f for f, _ in rows))])
        short = needed(X) - len(rows)
        if short > 0:
            return design(feats, [f for f, _ in rows], columns, short)
        model = self.samples.fit(kind)
        if model is None:
            return design(feats, [f for f, _ in rows], columns, ACTIVE_BATCH)
        # Uncertain: beyond the tolerance, and beyond what the model errs where it was fitted (its leave-one-out
        # error): measuring more where the figures themselves are that noisy (a peak's allocator steps) would
        # not make the prediction better, only the search slower.
        sigma = [model.predict(f)[1] for f in feats]
        limit = max(TOLERANCE, EXTRAPOLATION * model.sigma)
        return sorted((i for i, sd in enumerate(sigma) if sd > limit), key=lambda i: -sigma[i])[:ACTIVE_BATCH]

    def measure_peaks(self, configs: Sequence[Arch]) -> Iterator[tuple[Arch, str | None]]:
        """Measure each of `configs`' whole forward graph's peak memory, each in a fresh child (a peak is honest
        only in a process that has held no other model), storing each the moment it exists (what the memory model
        fits on); yields ``(config, None)`` for each stored, ``(config, reason)`` for each that failed."""
        for config in configs:
            try:
                m = measure_architecture(config, self.settings.measure_settings, self.target, ("memory",), ())
            except MeasureError as exc:
                yield config, str(exc)
                continue
            self._put_memory_sample(config, m)
            yield config, None

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
                self._put_timing(config, part, out)
                yield items[i], None
            else:
                yield items[i], out

    def cached_timing(self, config: Arch, part: str) -> Timing | None:
        """The stored timing of `config`'s "base" or block part (``config.block_parts()``) under these settings."""
        raw = self.cache.get("timings", (self._timing_key(config, part),))
        return Timing(**{k: v for k, v in json.loads(raw).items() if k in TIMING_FIELDS}) if raw else None

    def _put_timing(self, config: Arch, part: str, timing: Timing) -> None:
        """Store a part's timing with the features of its graph (what the latency model fits on); the whole graph's
        ("full") with the architecture's, under its archid."""
        features = arch_features(config, self.settings.seq_len) if part == "full" else \
            part_features(config, part, self.settings.seq_len)
        value = sample_value(features, **asdict(timing))
        self.cache.put("timings", (self._timing_key(config, part),), value, versions=self.settings.versions())
        self.samples.refresh()

    def _memory_key(self, config: Arch) -> str:
        """Where `config`'s whole forward graph's measured peak is kept (in the ``timings`` table, beside the
        part timings: both are what the cost models fit on)."""
        version = probes.get("memory").version
        return f"memory.{version}:whole:{config.archid}:{self.settings.measure_key()}:{self.hardware['id']}"

    def _put_memory_sample(self, config: Arch, m: Measurement) -> None:
        """Store a whole forward graph's measured peak (not a predicted one) with its features: what the memory
        model fits on."""
        peak = m.get("memory")
        if not isinstance(peak, Mapping) or "predicted" in peak or not peak.get("bytes"):
            return
        value = sample_value(arch_features(config, self.settings.seq_len), bytes=peak["bytes"],
                             load_bytes=peak.get("load_bytes"), run_bytes=peak.get("run_bytes"))
        self.cache.put("timings", (self._memory_key(config),), value, versions=self.settings.versions())
        self.samples.refresh()

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
    known: Mapping[str, Timing]     # shape timings stored (reused) or predicted (part of the "parts" probe's result)
    predicted: Mapping[str, Any] = field(default_factory=dict)  # probe results predicted, not measured


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
        chosen = tuple(n for n in s.run_probes if n not in task.predicted)
        m = measure_architecture(config, s.measure_settings, s.target, chosen, parts=task.parts)
        return TaskOutput(m, None, time.perf_counter() - t0, hardware, node)
    except Exception as exc:  # noqa: BLE001 - one candidate's failure must not end the search
        return TaskOutput(None, _reason(exc), time.perf_counter() - t0, hardware, node)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (MeasureError, LTSError)) else f"{type(exc).__name__}: {exc}"
