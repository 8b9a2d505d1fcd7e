"""Latency and memory of an ONNX graph, measured in an isolated child process.

What is measured is a set of probes (``lts.cost.probes``): :func:`measure` runs the probes it is
given, each in the child its graph belongs to, and hands each a :class:`ProbeContext` (graphs,
the peak-memory window, timing beside the reference graph). The built-in ones are described below.

Why a child: a measurement must not share threads, allocator state or imports with the
search, and a crash or hang in ONNX Runtime must cost one candidate, not the search.
Children are forked from a small fork server that has numpy and onnxruntime imported
(but never created a session), so a fresh, clean process costs milliseconds.

Scratch: the parent makes the child's scratch folders and removes them whatever happens to
the child (a timeout or a kill leaves nothing behind). Graphs go to RAM-backed /dev/shm only
when its free space holds the largest one; otherwise (Docker's 64 MB default) to the disk
temp folder, so no scratch limit decides a result.

Precision: a Target with ``precision="int8"`` gets every graph it measures (not the reference)
quantized first (``lts.cost.quantize``, the quantizer ``generate_text.py --precision int8`` uses),
by a child of its own, so the quantizer's memory never sits in the process whose peak is measured.

Memory (``onnx_memory_mb``): the child writes the full model to scratch, records its RSS,
then creates the session and runs one forward at ``seq_len``. The peak resident memory over
that window, minus the RSS just before, is the model's cost. Where the kernel tracks the peak
exactly (Linux: ``VmHWM`` after ``clear_refs``) that is the figure; elsewhere (macOS, or a
Target that asks for it) the parent's sample of the child's RSS from outside every
millisecond (psutil) is, and it is always recorded as a cross-check.

Latency: warm-up runs, then timed runs until the median is stable (standard error of the
median <= ``rel_err`` of it), between ``min_repeats`` and ``max_repeats``; the coefficient
of variation is recorded. A fixed reference graph (``REFERENCE``) is timed around the timed one,
in rounds (``time_beside_reference``), and the reference latency is kept beside it: the machine's
speed drifts between moments (tens of percent on a shared VM), the ratio much less, and the
ratio's spread between rounds is recorded as the timing's ``drift``. Timing takes the Target's exclusive
lock, memory phases a shared one: two searches on one machine never time at the same moment. Sessions, the peak-memory
probe and the lock all come from the Target (``lts.cost.target``); the child process from
``lts.core.procs``.
"""

from __future__ import annotations

import errno
import gc
import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from lts.core import faults
from lts.core.errors import LTSError
from lts.core.onnxgraph import kv_names, tiled_weights, write_onnx
from lts.core.procs import ChildError, ChildProcess
from lts.core.settings import Integer, Number, Settings, setting
from lts.cost import probes as registry
from lts.cost.objectives import DEFAULT_OBJECTIVES, probes_for
from lts.cost.probes import Measurement, Timing
from lts.cost.target import Target
from lts.families import Arch, arch_from_dict, to_record
from lts.families.gpt2 import ArchConfig


@dataclass(frozen=True)
class MeasureSettings(Settings):
    """How a graph is measured (with the Target, part of the cache key: change it and results are re-measured)."""

    seq_len: int = setting(1024, "tokens per timed forward pass (batch 1)", Integer(ge=1))
    context: int = setting(512, "tokens in the KV cache when a decoding step is timed "
                                "(onnx_decode_latency_s); generation memory decodes up to it", Integer(ge=1))
    warmup: int = setting(2, "untimed runs before a timing", Integer(ge=0), flag=False)
    min_repeats: int = setting(5, "timed runs at least", Integer(ge=1), flag=False)
    max_repeats: int = setting(30, "timed runs at most", Integer(ge=1), flag=False)
    rel_err: float = setting(0.03, "stop repeating once the median's standard error is within this fraction",
                             Number(ge=0), flag=False)
    min_seconds: float = setting(0.15, "seconds of timed runs at least, however fast the graph (split over its "
                                       "rounds)", Number(ge=0), flag=False)
    max_seconds: float = setting(1.5, "seconds of timed runs at most", Number(ge=0), flag=False)
    timeout_s: float = setting(300.0, "seconds before a measurement is failed", Number(gt=0), flag="--timeout")

    def check(self) -> None:
        if self.min_repeats > self.max_repeats:
            raise LTSError("min_repeats must not exceed max_repeats")
        if self.min_seconds > self.max_seconds:
            raise LTSError(f"need min_seconds <= max_seconds, got {self.min_seconds} and {self.max_seconds}")

    def key(self) -> dict[str, Any]:
        """Fields that change what is measured (timeout only decides failure, not values)."""
        d = asdict(self)
        d.pop("timeout_s")
        return d


class MeasureError(RuntimeError):
    """A measurement failed (export, ORT error, timeout, crash); the reason is the message."""


# ----------------------------------------------------------------------------- in the child

def token_feeds(seq_len: int, vocab_size: int) -> dict[str, np.ndarray]:
    """Deterministic token ids spread over the vocabulary, batch 1."""
    ids = np.random.default_rng(0).integers(0, vocab_size, size=(1, seq_len), dtype=np.int64)
    return {"input_ids": ids}


def feeds_for(sess: Any, seq_len: int) -> dict[str, np.ndarray]:
    """Inputs for a session of any part: token ids, or unit-scale hidden states + causal mask."""
    inp = sess.get_inputs()[0]
    if inp.type == "tensor(int64)":
        return token_feeds(seq_len, sess.get_outputs()[0].shape[-1])
    return block_feeds(inp.shape[-1], seq_len)


def block_feeds(n_embd: int, seq_len: int) -> dict[str, np.ndarray]:
    """A block part's inputs: unit-scale hidden states (batch 1) and an additive causal mask."""
    rng = np.random.default_rng(0)
    mask = np.where(np.tril(np.ones((seq_len, seq_len), bool)), 0.0, np.finfo(np.float32).min).astype(np.float32)
    return {"hidden": rng.standard_normal((1, seq_len, n_embd), dtype=np.float32), "mask": mask[None, None]}


def time_session(sess: Any, feeds: dict[str, np.ndarray], s: MeasureSettings) -> Timing:
    """Warm up, then repeat until the median is stable (or the repeat/time budget is spent).

    At least ``min_repeats`` runs and ``min_seconds`` of them: a graph of a few milliseconds (a
    decoding step) needs many runs before its thread pool is awake and its median means anything.
    Then until the median's standard error is within ``rel_err``, ``max_repeats`` runs were made
    or ``max_seconds`` passed.
    """
    for _ in range(s.warmup):
        sess.run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if len(times) < s.min_repeats or elapsed < s.min_seconds:
            continue
        if len(times) >= s.max_repeats or elapsed > s.max_seconds:
            break
        arr = np.asarray(times)
        # Standard error of the median ~ 1.2533 * sigma / sqrt(n) for near-normal noise.
        if 1.2533 * float(arr.std(ddof=1)) / math.sqrt(len(arr)) <= s.rel_err * float(np.median(arr)):
            break
    arr = np.asarray(times)
    med = float(np.median(arr))
    cv = float(arr.std(ddof=1) / arr.mean()) if len(arr) > 1 else 0.0
    return Timing(median_s=med, cv=cv, repeats=len(arr))


CALIBRATION_LOOPS, CALIBRATION_GAP_S = 5, 0.5  # a run's calibration: the median of 5 loops 0.5 s apart
SPIN_PAUSE_S = 0.05  # after a loop of the timed (spinning) session: its threads go to sleep meanwhile
ROUNDS = 3  # a timed graph is sampled in this many rounds, each between two timings of the reference


def time_beside_reference(sess: Any, feeds: dict[str, np.ndarray], s: MeasureSettings,
                          reference: tuple[Any, dict[str, np.ndarray]]) -> Timing:
    """Time `sess` in ``ROUNDS`` rounds, each between two timings of the reference graph.

    The machine's speed moves within seconds on a shared VM (tens of percent), so one sandwich
    can catch a slowdown on one side only. Each round gives the ratio part / reference (the mean of
    the reference timings either side); the Timing keeps the median round's ratio (``median_s /
    reference_s``) and, as ``drift``, the spread of the ratio between rounds: how far the
    reference-relative figure moves between moments, which the spread within one loop of runs
    (``cv``) does not see. The same repeat budget as one loop, split over the rounds.

    Loops, not runs interleaved one by one: ONNX Runtime's per-session thread pools keep spinning
    for tens of milliseconds after a run, so a run right after another session's measures their
    contention (2-3x for a decoding step on 2 cores). So the reference session does not spin
    (``Target.session(spin=False)``), and the timed session's loop is followed by a pause of
    ``SPIN_PAUSE_S`` before the reference runs again; each loop starts with warm-up runs.
    """
    per_round = replace(s, min_repeats=-(-s.min_repeats // ROUNDS), max_repeats=-(-s.max_repeats // ROUNDS),
                        min_seconds=s.min_seconds / ROUNDS, max_seconds=s.max_seconds / ROUNDS)
    refs = [time_session(*reference, per_round)]
    parts: list[Timing] = []
    for _ in range(ROUNDS):
        parts.append(time_session(sess, feeds, per_round))
        time.sleep(SPIN_PAUSE_S)  # the timed session's threads spin on after its loop: let them stop
        refs.append(time_session(*reference, per_round))
    ratios = [p.median_s / ((a.median_s + b.median_s) / 2) for p, a, b in zip(parts, refs, refs[1:])]
    median_s = float(np.median([p.median_s for p in parts]))
    ratio = float(np.median(ratios))
    logs = np.log(ratios)
    # Pooled spread within loops: each run's deviation from its own round's mean, relative.
    n = sum(p.repeats for p in parts)
    cv = math.sqrt(sum((p.cv ** 2) * max(0, p.repeats - 1) for p in parts) / max(1, n - len(parts)))
    return Timing(median_s=median_s, cv=cv, repeats=n, reference_s=median_s / ratio,
                  drift=float(logs.std(ddof=1)) if len(logs) > 1 else 0.0)


# The reference graph timed beside every measurement: one small GPT-2 block of the default space,
# at the measurement's seq_len. Its latency tracks the machine's speed at that moment (frequency,
# neighbours on a VM, thermal state), so a latency divided by it means the same thing whenever
# it was taken. Its config is part of every evaluation's cache key (lts.core.cachekeys).
REFERENCE = ArchConfig(1, 256, 1024, 4, vocab_size=512, n_positions=4096)


def scratch_dirs(needed_bytes: int) -> list[str]:
    """Where the child writes its graphs, best first: RAM-backed /dev/shm when it has room, then disk.

    /dev/shm is often small (Docker's default is 64 MB): it is used only when its free space holds
    the largest graph with a margin; the disk temp folder always comes next, and a write that still
    finds RAM full (another process filled it meanwhile) moves on to it.
    """
    dirs = []
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        try:
            if shutil.disk_usage(shm).free >= needed_bytes * 1.1 + 16 * 2**20:
                dirs.append(shm)
        except OSError:
            pass
    dirs.append(tempfile.gettempdir())
    return dirs


def _write_graph(scratch: list[str], name: str, config: Arch, part: str, weights: Any,
                 prepared: dict[str, str] | None = None) -> tuple[Path, int]:
    """Write `part` of `config` into the first scratch folder with room; (path, bytes). A graph in
    `prepared` (part -> path: quantized beforehand, :func:`_prepare_child`) is used as it is."""
    if prepared and part in prepared:
        path = Path(prepared[part])
        return path, path.stat().st_size
    for i, folder in enumerate(scratch):
        path = Path(folder) / name
        try:
            return path, write_onnx(config.graph_spec(part), path, weights)
        except OSError as exc:
            path.unlink(missing_ok=True)
            if exc.errno != errno.ENOSPC or i == len(scratch) - 1:
                raise
    raise AssertionError("unreachable")


def _reference(scratch: list[str], settings: MeasureSettings, target: Target, weights: Any) -> tuple[Any, dict]:
    path, _ = _write_graph(scratch, "reference.onnx", REFERENCE, "block", weights)
    sess = target.session(path, spin=False)  # its threads sleep after its loop: they never slow the timed graph
    path.unlink()
    return sess, feeds_for(sess, settings.seq_len)


def _prepare_child(conn: Any, items: tuple[tuple[dict, str, str], ...], precision: str, scratch: list[str]) -> None:
    """Write the graph of each ``(record, part, key)`` of `items` and quantize it to `precision` (in a process of
    its own: the quantizer's memory must not stay in the measuring child, whose peaks count); sends {key: path}."""
    from lts.cost.quantize import quantize_model

    weights = tiled_weights()
    out = {}
    for config_dict, part, key in items:
        path, _ = _write_graph(scratch, f"{key}.fp32.onnx", arch_from_dict(config_dict), part, weights)
        final = path.with_name(f"{key}.{precision}.onnx")
        quantize_model(path, final)
        path.unlink()
        out[key] = str(final)
    conn.send(("done", out))


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
        path, _ = _write_graph(self._scratch, f"{part}.onnx", self.config, part, self.weights, self._prepared)
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
            self._reference = _reference(self._scratch, self.settings, self.target, self.weights)
        return self._reference

    def token_feeds(self) -> dict[str, np.ndarray]:
        """The forward graph's inputs: ``seq_len`` tokens, batch 1."""
        return token_feeds(self.settings.seq_len, self.config.vocab_size)

    def feeds_for(self, sess: Any) -> dict[str, np.ndarray]:
        """Inputs for `sess` (a forward part) at ``seq_len``."""
        return feeds_for(sess, self.settings.seq_len)

    def decode_feeds(self, past_len: int) -> dict[str, np.ndarray]:
        """Inputs of one decoding step with `past_len` cached positions."""
        return decode_feeds(self.config, past_len)

    def generate_to_context(self, sess: Any) -> Any:
        """Prefill then decode on `sess` up to ``context`` tokens (the generation-memory workload)."""
        return generate_to_context(sess, self.config, self.settings.context)

    def time(self, sess: Any, feeds: dict[str, np.ndarray]) -> Timing:
        reference = self.reference()
        with self.target.lock(exclusive=True):
            return time_beside_reference(sess, feeds, self.settings, reference)


def _child(conn: Any, config_dict: dict | None, settings: MeasureSettings, target: Target, parts: tuple[str, ...],
           probes: tuple[tuple[str, Callable[[ProbeContext], Any]], ...], scratch: list[str],
           prepared: dict[str, str] | None = None) -> None:
    """Run `probes` ((name, run) pairs, in order: only the functions travel, pickled by reference) on
    `config_dict`, or time the reference graph alone (None)."""
    if config_dict is None:  # the calibration: the reference graph alone
        sess, feeds = _reference(scratch, settings, target, tiled_weights())
        loops = []
        for i in range(CALIBRATION_LOOPS):  # spread over a few seconds: one loop can hit a passing slowdown
            if i:
                time.sleep(CALIBRATION_GAP_S)
            with target.lock(exclusive=True):
                loops.append(time_session(sess, feeds, settings))
        conn.send(("done", {"reference": asdict(sorted(loops, key=lambda t: t.median_s)[len(loops) // 2])}))
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
    return result, {"bytes": sampled if peak is None else peak - base, "sampled_bytes": sampled}


def prefill_feeds(config: Arch, tokens: int) -> dict[str, np.ndarray]:
    """A prompt of `tokens` tokens and an empty KV cache: the first call of a generation."""
    return {**decode_feeds(config, 0), "input_ids": token_feeds(tokens, config.vocab_size)["input_ids"],
            "attention_mask": np.ones((1, tokens), np.int64)}


def decode_feeds(config: Arch, past_len: int, batch: int = 1) -> dict[str, np.ndarray]:
    """One new token and a KV cache of `past_len` positions (filled: untouched pages would not count as memory)."""
    rng = np.random.default_rng(0)
    feeds = {"input_ids": np.full((batch, 1), 1, np.int64), "attention_mask": np.ones((batch, past_len + 1), np.int64)}
    layout = config.kv_layout()
    for name, (h, hd) in zip(kv_names(len(layout))[0], (pair for pair in layout for _ in ("key", "value"))):
        feeds[name] = rng.standard_normal((batch, h, past_len, hd), dtype=np.float32)
    return feeds


PROMPT_TOKENS = 16  # the prefill of the generation-memory probe (a short prompt, like a chat turn)
DECODE_STEPS = 3    # decoding steps that end the probe at --context tokens, each feeding back the last presents


def generate_to_context(sess: Any, config: Arch, context: int) -> Any:
    """What a generation to `context` tokens holds at its end: prefill a prompt, then decode to `context`.

    The cache of the steps in between is filled in directly (their compute does not change the
    peak, which is weights + the largest cache, held twice during the last step: the past being
    read and the present being written, as ``generate_text.py`` holds them).
    """
    prompt = min(PROMPT_TOKENS, context)
    sess.run(None, prefill_feeds(config, prompt))
    steps = min(DECODE_STEPS, context - prompt)
    if steps:
        past_names = kv_names(len(config.kv_layout()))[0]
        feeds = decode_feeds(config, context - steps)
        for _ in range(steps):
            _, *presents = sess.run(None, feeds)
            mask = np.ones((1, feeds["attention_mask"].shape[1] + 1), np.int64)
            feeds = {"input_ids": feeds["input_ids"], "attention_mask": mask, **dict(zip(past_names, presents))}
    return sess


# ----------------------------------------------------------------------------- in the parent

# Imported once by the fork server; no session is ever made there.
PRELOAD = ("numpy", "onnxruntime", "onnx", "psutil", "lts.core.onnxgraph", "lts.families.gpt2.graph",
           "lts.cost.measure", "lts.cost.probes", "lts.cost.quantize")


DEFAULT_PROBES = probes_for(DEFAULT_OBJECTIVES)  # what the default search measures
_GRAPH_FILES = {"forward": ("full",), "kv": ("kv",)}  # a probe's graph -> the graph files it writes ("parts": parts)


def measure_architecture(config: Arch, settings: MeasureSettings, target: Target,
                         probes: Iterable[str] = DEFAULT_PROBES, parts: tuple[str, ...] = ("base", "block"), *,
                         memory: bool = True, generation: bool = False) -> Measurement:
    """Run `probes` (names in ``lts.cost.probes``) on `config`: a :class:`Measurement` of their results.

    Graph-less probes run here; those on the forward graph and the latency `parts` ("parts" probes run
    only when `parts` is not empty) in one fresh child; those on the generation graph in a second
    fresh child (a peak is only honest in a process that has not held another model). The old
    keywords still work: ``memory=False`` drops the forward-graph probes, ``generation=True`` adds
    every generation-graph one. Raises MeasureError with a one-line reason on failure, timeout or crash.
    """
    names = registry.with_graphs(probes, add=("kv",) if generation else (), drop=() if memory else ("forward",))
    chosen = [p for p in registry.ordered(names) if p.graph != "parts" or parts]
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
    with _child_process(to_record(config), settings, target, parts, probes, graphs, needed,
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
    with _child_process(None, settings, target, (), (), (), 0, "lts-measure reference") as child:
        kind, payload = child.recv()
        if kind == "error":
            raise MeasureError(payload)
        return Timing(**payload["reference"])


def _failed(exc: ChildError) -> MeasureError:
    """A measuring child's timeout or crash as the one-line reason a measurement failed."""
    return MeasureError(str(exc) if exc.timed_out else f"measuring process crashed: {exc}")


@contextmanager
def _scratch(needed_bytes: int) -> Iterator[list[str]]:
    """Scratch folders this process owns and removes whatever happens to the children that write into them."""
    scratch = [tempfile.mkdtemp(prefix="lts-measure-", dir=d) for d in scratch_dirs(needed_bytes)]
    try:
        yield scratch
    finally:
        for folder in scratch:  # a killed or timed-out child cannot clean up: its parent does
            shutil.rmtree(folder, ignore_errors=True)


def _quantized(items: tuple[tuple[dict, str, str], ...], target: Target, scratch: list[str], timeout_s: float,
               name: str) -> dict[str, str] | None:
    """{key: path} of each ``(record, part, key)`` graph quantized to the Target's precision by a child of its own
    (None on an fp32 Target)."""
    if target.precision == "fp32" or not items:
        return None
    with ChildProcess(_prepare_child, (items, target.precision, scratch), preload=PRELOAD, timeout_s=timeout_s,
                      name=f"{name} ({target.precision})") as child:
        kind, prepared = child.recv()
    if kind == "error":
        raise MeasureError(f"{target.precision} quantization failed: {prepared}")
    return prepared


@contextmanager
def _child_process(config: dict | None, settings: MeasureSettings, target: Target, parts: tuple[str, ...],
                   probes: tuple[Any, ...], graphs: tuple[str, ...], needed_bytes: int,
                   name: str) -> Iterator[ChildProcess]:
    """The measuring child running `probes`, with scratch folders this process owns and removes, whatever happens
    to the child. A Target of another precision than fp32 gets `graphs` quantized first, by a child of their own.
    """
    quantized = config is not None and target.precision != "fp32"
    try:
        # room for the quantized graphs beside the one being quantized
        with _scratch(needed_bytes * (3 if quantized else 1)) as scratch:
            prepared = None if config is None else _quantized(tuple((config, g, g) for g in graphs), target,
                                                               scratch, settings.timeout_s, name)
            runs = tuple((p.name, p.run) for p in probes)
            with ChildProcess(_child, (config, settings, target, parts, runs, scratch, prepared),
                              preload=PRELOAD, timeout_s=settings.timeout_s, name=name) as child:
                yield child
    except ChildError as exc:
        raise _failed(exc) from None


# ----------------------------------------------------------------------------- the table: many parts per child

TABLE_CHUNK = 32  # parts timed by one child when a table is filled (a crash costs the rest of a chunk, tried again)


def _table_child(conn: Any, items: tuple[tuple[dict, str], ...], settings: MeasureSettings, target: Target,
                 run: Callable[[ProbeContext], dict[str, Timing]], scratch: list[str],
                 prepared: dict[str, str] | None) -> None:
    """Time each ``(record, part)`` of `items` with the latency-parts probe's `run`, exactly as a candidate's own
    child times its parts (one reference graph for all); sends ("part", (i, timing)) or ("failed", (i, reason))
    for each, the moment it is known, then ("done", None)."""
    reference = _reference(scratch, settings, target, tiled_weights())
    for i, (config_dict, part) in enumerate(items):
        try:
            ctx = ProbeContext(arch_from_dict(config_dict), settings, target, (part,), conn, scratch,
                               {part: prepared[str(i)]} if prepared else None, reference)
            conn.send(("part", (i, asdict(run(ctx)[part]))))
        except Exception as exc:  # noqa: BLE001 - this part fails, the next ones are still timed
            conn.send(("failed", (i, f"{type(exc).__name__}: {exc}".strip()[:300])))
    conn.send(("done", None))


def measure_parts(items: Sequence[tuple[Arch, str]], settings: MeasureSettings, target: Target,
                  probe: str) -> Iterator[tuple[int, Timing | str]]:
    """Time each ``(architecture, part)`` of `items` (a latency part: "base", a block part, "full") with the
    latency-parts probe `probe`, up to ``TABLE_CHUNK`` of them in one measuring child: ``(index, Timing)`` as each
    is timed, ``(index, reason)`` for one that failed (a part whose child crashed or hung fails with it; the
    parts after it in its chunk too, with the same reason).

    The figures are what a candidate's own child measures (the same probe, reference graph and lock); a chunk
    saves each part the child's start, its reference graph's session and its imports.
    """
    run = registry.get(probe).run
    for start in range(0, len(items), TABLE_CHUNK):
        chunk = items[start:start + TABLE_CHUNK]
        left = set(range(len(chunk)))
        try:
            for i, out in _measure_chunk(chunk, settings, target, run):
                left.discard(i)
                yield start + i, out
        except MeasureError as exc:
            for i in sorted(left):
                yield start + i, str(exc)


def _measure_chunk(chunk: Sequence[tuple[Arch, str]], settings: MeasureSettings, target: Target,
                   run: Callable[[ProbeContext], dict[str, Timing]]) -> Iterator[tuple[int, Timing | str]]:
    records = tuple((to_record(config), part) for config, part in chunk)
    sizes = [write_onnx(config.graph_spec(part), None) for config, part in chunk]
    # int8: every quantized graph waits in scratch (about a quarter of its fp32 size) beside the one being written
    needed = max(sizes) + (sum(sizes) // 3 + 2 * max(sizes) if target.precision != "fp32" else 0)
    name = f"lts-measure table ({len(chunk)} parts)"
    try:
        with _scratch(needed) as scratch:
            prepared = _quantized(tuple((r, p, str(i)) for i, (r, p) in enumerate(records)), target, scratch,
                                  settings.timeout_s * len(chunk), name)
            with ChildProcess(_table_child, (records, settings, target, run, scratch, prepared), preload=PRELOAD,
                              timeout_s=settings.timeout_s, name=name) as child:
                while True:
                    kind, payload = child.recv()
                    if kind == "part":
                        yield payload[0], Timing(**payload[1])
                    elif kind == "failed":
                        yield payload[0], payload[1]
                    elif kind == "done":
                        return
                    elif kind == "error":
                        raise MeasureError(payload)
                    child.restart_clock()  # each part gets the whole timeout
    except ChildError as exc:
        raise _failed(exc) from None
