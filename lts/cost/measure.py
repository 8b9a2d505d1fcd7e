"""Measuring one candidate: its probes run in an isolated child process, with a :class:`ProbeContext`.

What is measured is a set of probes (``lts.cost.probes``): :func:`measure_architecture` runs the
probes it is given, each in the child its graph belongs to (``lts.cost.child`` says why a child),
and hands each a :class:`ProbeContext` (graphs written to scratch, ``lts.cost.scratch``; the
peak-memory window; timing beside the reference graph, ``lts.cost.timing``). :func:`measure_reference`
times the reference graph alone (a run's calibration). Many latency parts in one child: ``lts.cost.table``.

Memory (``onnx_memory_mb``): the child writes the full model to scratch, records its RSS,
then creates the session and runs one forward at ``seq_len``. The peak resident memory over
that window, minus the RSS just before, is the model's cost. Where the kernel tracks the peak
exactly (Linux: ``VmHWM`` after ``clear_refs``) that is the figure; elsewhere (macOS, or a
Target that asks for it) the parent's sample of the child's RSS from outside every
millisecond (psutil) is, and it is always recorded as a cross-check.

Timing takes the Target's exclusive lock, memory phases a shared one: two searches on one machine
never time at the same moment. Sessions, the peak-memory probe and the lock all come from the Target
(``lts.cost.target``); the child process from ``lts.core.procs``.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from lts.core import faults, procs
from lts.core.onnxgraph import tiled_weights, write_onnx
from lts.core.procs import ChildProcess
from lts.cost import feeds as graph_inputs
from lts.cost import probes as registry
from lts.cost.child import MeasureError, child_process
from lts.cost.objectives import DEFAULT_OBJECTIVES, probes_for
from lts.cost.probes import Measurement, Timing
from lts.cost.scratch import quantized_graphs, scratch_folders, write_graph
from lts.cost.settings import MeasureSettings
from lts.cost.target import Target
from lts.cost.timing import calibration, reference_session, time_beside_reference
from lts.families import Arch, arch_from_dict, to_record


class ProbeContext:
    """What a probe's ``run`` gets (``lts.cost.probes``): the candidate, how and where to measure, and services.

    In the measuring child: ``write_graph(part)`` writes a graph ("full", "base", "block", "kv"; the
    quantized one on an int8 Target) and returns its path (the caller unlinks it); ``session(part)``
    makes a session of it (the file is gone after); ``peak_memory(work)`` is a peak-memory window
    around ``work()``; ``time(sess, feeds)`` times a session beside the reference graph under the
    Target's exclusive lock. ``parts`` are the latency parts to time; ``shared`` holds what one probe
    leaves for a later one of the same child. A graph-less probe gets a context without a child
    (``conn`` None): only ``config``, ``settings`` and ``target``.
    """

    def __init__(self, config: Arch, settings: MeasureSettings, target: Target, parts: tuple[str, ...] = (),
                 conn: Any = None, scratch: list[str] | None = None, prepared: dict[str, str] | None = None,
                 reference: tuple[Any, dict] | None = None) -> None:
        self.config, self.settings, self.target, self.parts = config, settings, target, parts
        self.shared: dict[str, Any] = {}
        self._conn, self._scratch, self._prepared = conn, scratch or [], prepared
        self._weights: Any = None
        self._reference = reference

    @property
    def weights(self) -> Any:
        if self._weights is None:
            self._weights = tiled_weights()
        return self._weights

    def write_graph(self, part: str) -> Path:
        path, _ = write_graph(self._scratch, f"{part}.onnx", self.config, part, self.weights, self._prepared)
        return path

    def session(self, part: str) -> Any:
        path = self.write_graph(part)
        sess = self.target.session(path)
        path.unlink()
        return sess

    def peak_memory(self, work: Callable[[], Any]) -> tuple[Any, dict[str, int | None]]:
        """(what `work` returned, ``{"bytes", "sampled_bytes"}``): its peak resident memory over the RSS just
        before it (exact where the Target reads the kernel's peak, else the sample), and the parent's sample."""
        if self._conn is None:
            raise RuntimeError("peak_memory needs a measuring child (a probe with a graph)")
        return _peak_memory(self._conn, self.target, work)

    def reference(self) -> tuple[Any, dict]:
        """The reference graph's session and feeds (made once per child, on first use)."""
        if self._reference is None:
            self._reference = reference_session(self._scratch, self.settings, self.target, self.weights)
        return self._reference

    def token_feeds(self) -> dict[str, np.ndarray]:
        """The forward graph's inputs: ``seq_len`` tokens, batch 1."""
        return graph_inputs.token_feeds(self.settings.seq_len, self.config.vocab_size)

    def feeds_for(self, sess: Any) -> dict[str, np.ndarray]:
        """Inputs for `sess` (a forward part) at ``seq_len``."""
        return graph_inputs.feeds_for(sess, self.settings.seq_len)

    def decode_feeds(self, past_len: int) -> dict[str, np.ndarray]:
        """Inputs of one decoding step with `past_len` cached positions."""
        return graph_inputs.decode_feeds(self.config, past_len)

    def generate_to_context(self, sess: Any) -> Any:
        """Prefill then decode on `sess` up to ``context`` tokens (the generation-memory workload)."""
        return graph_inputs.generate_to_context(sess, self.config, self.settings.context)

    def time(self, sess: Any, feeds: dict[str, np.ndarray], warm: float = 0.0) -> Timing:
        reference = self.reference()
        with self.target.lock(exclusive=True):
            return time_beside_reference(sess, feeds, self.settings, reference, warm)


# ----------------------------------------------------------------------------- in the child

def _child(conn: Any, config_dict: dict | None, settings: MeasureSettings, target: Target, parts: tuple[str, ...],
           probes: tuple[tuple[str, Callable[[ProbeContext], Any]], ...], scratch: list[str],
           prepared: dict[str, str] | None = None) -> None:
    """Run `probes` ((name, run) pairs, in order: only the functions travel, pickled by reference) on
    `config_dict`, or time the reference graph alone (None)."""
    procs.fix_mmap_threshold()  # before anything is allocated: a peak independent of what the child did first
    if config_dict is None:  # the calibration: the reference graph alone
        sess, feeds = reference_session(scratch, settings, target, tiled_weights())
        conn.send(("done", {"reference": asdict(calibration(sess, feeds, settings, target))}))
        return
    config = arch_from_dict(config_dict)
    faults.point("measure", config.archid)
    ctx = ProbeContext(config, settings, target, parts, conn, scratch, prepared)
    conn.send(("done", {name: run(ctx) for name, run in probes}))


def _peak_memory(conn: Any, target: Target, work: Callable[[], Any]) -> tuple[Any, dict[str, int | None]]:
    """Peak resident memory of `work` over the RSS just before it (the parent samples from outside
    meanwhile and sends its figure back); (what `work` returned, {"bytes", "sampled_bytes"})."""
    gc.collect()
    base = target.memory_bytes()
    exact = target.reset_peak_memory()
    conn.send(("baseline", base))
    conn.recv()  # the parent's sampler is running
    result = work()
    peak = target.peak_memory_bytes() if exact else None
    conn.send(("memory", None if peak is None else peak - base))
    sampled = conn.recv()
    gc.collect()
    return result, {"bytes": sampled if peak is None else peak - base, "sampled_bytes": sampled, "baseline": base}


# ----------------------------------------------------------------------------- in the parent

DEFAULT_PROBES = probes_for(DEFAULT_OBJECTIVES)  # what the default search measures
_GRAPH_FILES = {"forward": ("full",), "kv": ("kv",)}  # a probe's graph -> the graph files it writes ("parts": parts)


def measure_architecture(config: Arch, settings: MeasureSettings, target: Target,
                         probes: Iterable[str] = DEFAULT_PROBES, parts: tuple[str, ...] = ("base", "block")
                         ) -> Measurement:
    """Run `probes` (names in ``lts.cost.probes``) on `config`: a :class:`Measurement` of their results.

    Graph-less probes run here; those on the forward graph and the latency `parts` ("parts" probes run
    only when `parts` is not empty) in one fresh child; those on the generation graph in a second
    fresh child (a peak is only honest in a process that has not held another model). Raises
    MeasureError with a one-line reason on failure, timeout or crash.
    """
    chosen = [p for p in registry.ordered(probes) if p.graph != "parts" or parts]
    results: dict[str, Any] = {}
    for graphs in (registry.FORWARD_GRAPHS, ("kv",)):
        in_child = tuple(p for p in chosen if p.graph in graphs)
        if in_child:
            results.update(_measure_in_child(config, settings, target, tuple(parts), in_child))
    here = ProbeContext(config, settings, target)
    results.update({p.name: p.run(here) for p in chosen if not p.on_target})
    return Measurement({name: results[name] for name in sorted(results)})


def _measure_in_child(config: Arch, settings: MeasureSettings, target: Target, parts: tuple[str, ...],
                      probes: tuple[Any, ...]) -> dict[str, Any]:
    """{probe name: result} of `probes` (in order) from one measuring child."""
    graphs = tuple(dict.fromkeys(g for p in probes for g in (parts if p.graph == "parts" else _GRAPH_FILES[p.graph])))
    needed = max(write_onnx(config.graph_spec(part), None) for part in (*graphs, "base"))
    with _measuring_child(to_record(config), settings, target, parts, probes, graphs, needed,
                          f"lts-measure {config.archid}") as child:
        sampler, base = None, 0
        while True:
            kind, payload = child.recv()
            if kind == "baseline":
                base, sampler = payload, child.sampler(0.001)
                child.send("go")
            elif kind == "memory":
                child.send(max(0, sampler.stop() - base) if sampler else 0)
            elif kind == "done":
                return payload
            elif kind == "error":
                raise MeasureError(payload)


def measure_reference(settings: MeasureSettings, target: Target) -> Timing:
    """Time the reference graph alone, now (a run's calibration: its latencies are reported at this speed)."""
    with _measuring_child(None, settings, target, (), (), (), 0, "lts-measure reference") as child:
        kind, payload = child.recv()
        if kind == "error":
            raise MeasureError(payload)
        return Timing(**payload["reference"])


@contextmanager
def _measuring_child(config: dict | None, settings: MeasureSettings, target: Target, parts: tuple[str, ...],
                     probes: tuple[Any, ...], graphs: tuple[str, ...], needed_bytes: int,
                     name: str) -> Iterator[ChildProcess]:
    """The measuring child running `probes`, with scratch folders this process owns and removes, whatever happens
    to the child. A Target of another precision than fp32 gets `graphs` quantized first, by a child of their own.
    """
    quantized = config is not None and target.precision != "fp32"
    # room for the quantized graphs beside the one being quantized
    with scratch_folders(needed_bytes * (3 if quantized else 1)) as scratch:
        prepared = None if config is None else quantized_graphs(tuple((config, g, g) for g in graphs), target,
                                                                scratch, settings.timeout_s, name)
        runs = tuple((p.name, p.run) for p in probes)
        with child_process(_child, (config, settings, target, parts, runs, scratch, prepared), settings.timeout_s,
                           name) as child:
            yield child
