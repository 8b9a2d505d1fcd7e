"""Latency and memory of an ONNX graph, measured in an isolated child process.

Why a child: a measurement must not share threads, allocator state or imports with the
search, and a crash or hang in ONNX Runtime must cost one candidate, not the search.
Children are forked from a small fork server that has numpy and onnxruntime imported
(but never created a session), so a fresh, clean process costs milliseconds.

Memory (``onnx_memory_mb``): the child writes the full model to its own temp folder,
records its RSS, then creates the session and runs one forward at ``seq_len``. The peak
resident memory over that window, minus the RSS just before, is the model's cost. The
kernel tracks the peak exactly (``VmHWM`` after ``clear_refs``); the parent also samples
the child's RSS from outside every millisecond as a cross-check and fallback.

Latency: warm-up runs, then timed runs until the median is stable (standard error of the
median <= ``rel_err`` of it), between ``min_repeats`` and ``max_repeats``; the coefficient
of variation is recorded. Timing takes an exclusive machine-wide lock (``flock`` on ``lts-measure.lock`` in
the temp folder), memory phases a shared one: two searches on one machine never time at
the same moment.
"""

from __future__ import annotations

import fcntl
import gc
import math
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lts.errors import LTSError
from lts.executors import fork_context


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class MeasureSettings:
    """How a graph is measured; part of the cache key (change it and results are re-measured)."""

    seq_len: int = 1024
    threads: int = field(default_factory=default_threads)
    warmup: int = 2
    min_repeats: int = 5
    max_repeats: int = 30
    rel_err: float = 0.03
    max_seconds: float = 1.5
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("seq_len", "threads", "min_repeats", "max_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise LTSError(f"{name} must be a positive integer, got {v!r}")
        if self.min_repeats > self.max_repeats:
            raise LTSError("min_repeats must not exceed max_repeats")
        if self.timeout_s <= 0:
            raise LTSError(f"timeout must be > 0 seconds, got {self.timeout_s}")

    def key(self) -> dict[str, Any]:
        """Fields that change what is measured (timeout only decides failure, not values)."""
        d = asdict(self)
        d.pop("timeout_s")
        return d


@dataclass(frozen=True)
class Timing:
    """Median latency (s) of repeated runs, with its spread."""

    median_s: float
    cv: float
    repeats: int

    @property
    def std_s(self) -> float:
        return self.cv * self.median_s


class MeasureError(RuntimeError):
    """A measurement failed (export, ORT error, timeout, crash); the reason is the message."""


# ----------------------------------------------------------------------------- in the child

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def session(path: str | os.PathLike, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads  # ORT ignores OMP_NUM_THREADS
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def token_feeds(seq_len: int, vocab_size: int) -> dict[str, np.ndarray]:
    """Deterministic token ids spread over the vocabulary, batch 1."""
    ids = np.random.default_rng(0).integers(0, vocab_size, size=(1, seq_len), dtype=np.int64)
    return {"input_ids": ids}


def feeds_for(sess, seq_len: int) -> dict[str, np.ndarray]:
    """Inputs for a session of any part: token ids, or unit-scale hidden states + causal mask."""
    inp = sess.get_inputs()[0]
    if inp.type == "tensor(int64)":
        return token_feeds(seq_len, sess.get_outputs()[0].shape[-1])
    rng = np.random.default_rng(0)
    d = inp.shape[-1]
    mask = np.where(np.tril(np.ones((seq_len, seq_len), bool)), 0.0, np.finfo(np.float32).min).astype(np.float32)
    return {"hidden": rng.standard_normal((1, seq_len, d), dtype=np.float32), "mask": mask[None, None]}


def time_session(sess, feeds: dict[str, np.ndarray], s: MeasureSettings) -> Timing:
    """Warm up, then repeat until the median is stable (or the repeat/time budget is spent)."""
    for _ in range(s.warmup):
        sess.run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < s.max_repeats:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
        if len(times) >= s.min_repeats:
            arr = np.asarray(times)
            med = float(np.median(arr))
            # Standard error of the median ~ 1.2533 * sigma / sqrt(n) for near-normal noise.
            se = 1.2533 * float(arr.std(ddof=1)) / math.sqrt(len(arr))
            if se <= s.rel_err * med or time.perf_counter() - start > s.max_seconds:
                break
    arr = np.asarray(times)
    med = float(np.median(arr))
    cv = float(arr.std(ddof=1) / arr.mean()) if len(arr) > 1 else 0.0
    return Timing(median_s=med, cv=cv, repeats=len(arr))


@contextmanager
def machine_lock(lock_path: str | None, exclusive: bool) -> Iterator[None]:
    """Shared (memory) or exclusive (timing) lock across all LTS processes on this machine."""
    if not lock_path:
        yield
        return
    Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _scratch_dir() -> str | None:
    """RAM-backed scratch where available: writing a 400 MB model to disk costs seconds."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _child(conn, config_dict: dict, settings: MeasureSettings, parts: tuple[str, ...],
           memory: bool, lock_path: str | None) -> None:
    try:
        from lts.onnx_graph import gpt2_graph_spec, tiled_weights, write_onnx
        from lts.space import ArchConfig

        config = ArchConfig(**config_dict)
        weights = tiled_weights()
        out: dict[str, Any] = {}
        phases: dict[str, float] = {}
        clock = time.perf_counter
        with tempfile.TemporaryDirectory(prefix="lts-measure-", dir=_scratch_dir()) as tmp:
            if memory:
                with machine_lock(lock_path, exclusive=False):
                    path = Path(tmp) / "model.onnx"
                    t0 = clock()
                    out["file_bytes"] = write_onnx(gpt2_graph_spec(config, "full"), path, weights)
                    phases["write"] = clock() - t0
                    feeds = token_feeds(settings.seq_len, config.vocab_size)  # made before the baseline
                    gc.collect()
                    base_kib = _status_kib("VmRSS")
                    exact = _reset_peak()
                    conn.send(("baseline", base_kib * 1024))
                    conn.recv()  # the parent's sampler is running
                    t0 = clock()
                    sess = session(path, settings.threads)
                    phases["session"] = clock() - t0
                    sess.run(None, feeds)
                    phases["forward"] = clock() - t0 - phases["session"]
                    peak_kib = _status_kib("VmHWM") if exact else None
                    conn.send(("memory", {"peak_delta_bytes": None if peak_kib is None else (peak_kib - base_kib) * 1024}))
                    conn.recv()
                    del sess
                    path.unlink()
                    gc.collect()
            timings = {}
            for part in parts:
                t0 = clock()
                path = Path(tmp) / f"{part}.onnx"
                write_onnx(gpt2_graph_spec(config, part), path, weights)
                sess = session(path, settings.threads)
                feeds = feeds_for(sess, settings.seq_len)
                with machine_lock(lock_path, exclusive=True):
                    timings[part] = asdict(time_session(sess, feeds, settings))
                del sess
                path.unlink()
                phases[f"time_{part}"] = clock() - t0
            out["timings"] = timings
            out["phases"] = phases
        conn.send(("done", out))
    except BaseException as exc:  # report everything: the parent records it as the failure reason
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}".strip()[:300]))
        except Exception:
            pass
    finally:
        conn.close()


# ----------------------------------------------------------------------------- in the parent

PRELOAD = ("numpy", "onnxruntime", "onnx", "lts.onnx_graph", "lts.measure")  # no session is ever made there


class _Sampler(threading.Thread):
    """Samples a process's RSS from outside until stopped; keeps the maximum."""

    def __init__(self, pid: int, interval_s: float = 0.001) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except Exception:
                return
            time.sleep(self.interval_s)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def measure(config, settings: MeasureSettings, parts: tuple[str, ...] = ("base", "block"),
            memory: bool = True, lock_path: str | None = None) -> dict[str, Any]:
    """Measure `config` in a fresh child; return memory figures and a Timing per part.

    Raises MeasureError with a one-line reason on failure, timeout or crash.
    """
    ctx = fork_context(PRELOAD)
    parent_conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child_conn, config.to_dict(), settings, tuple(parts), memory, lock_path),
                       daemon=True)
    deadline = time.monotonic() + settings.timeout_s
    proc.start()
    child_conn.close()
    result: dict[str, Any] = {}
    sampler: _Sampler | None = None
    base = 0
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not parent_conn.poll(remaining):
                raise MeasureError(f"timeout after {settings.timeout_s:.0f}s")
            try:
                kind, payload = parent_conn.recv()
            except EOFError:
                proc.join(5)
                code = proc.exitcode
                why = "killed by SIGKILL (out of memory?)" if code == -9 else f"exit code {code}"
                raise MeasureError(f"measuring process crashed: {why}") from None
            if kind == "baseline":
                base = payload
                sampler = _Sampler(proc.pid)
                sampler.start()
                parent_conn.send("go")
            elif kind == "memory":
                sampled = sampler.stop() - base if sampler else 0
                sampler = None
                result["memory_sampled_bytes"] = max(0, sampled)
                exact = payload["peak_delta_bytes"]
                result["memory_bytes"] = exact if exact is not None else max(0, sampled)
                parent_conn.send("ok")
            elif kind == "done":
                result["file_bytes"] = payload.get("file_bytes")
                result["phases"] = payload.get("phases", {})
                result["timings"] = {k: Timing(**v) for k, v in payload["timings"].items()}
                return result
            elif kind == "error":
                raise MeasureError(payload)
    finally:
        if sampler is not None:
            sampler.stop()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent_conn.close()
