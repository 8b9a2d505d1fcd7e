"""Where and how a graph runs: the measurement Target.

A Target decides everything about running an ONNX graph that changes a cost figure: the ONNX
Runtime execution provider and its options, the thread count, how peak memory is probed, the
hardware fingerprint that figures are stored and compared under, and the lock that keeps two
timings on one device from overlapping. The search's measurements (``lts.cost.measure``),
``generate_text.py --backend onnx`` (``lts.generate.onnx_kv``) and the scripts in
``benchmarks/`` all get their sessions from a Target; figures from two Targets (two
fingerprints) are never served for one another by the cache.

``CPUTarget`` is the one tested here. Another provider is another class implementing the
:class:`Target` protocol (see the README, "Adding a target"): typically a subclass of
``CPUTarget`` that changes ``providers()``, ``fingerprint()`` and the memory probe.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lts.core import procs
from lts.core.errors import LTSError
from lts.core.locks import file_lock
from lts.core.settings import Choice, Integer, Optional, Settings, borrow, setting
from lts.cost.quantize import PRECISIONS

MEASURED_PLATFORMS = ("linux", "darwin")  # where measured objectives run (tested on Linux; see the README)


def default_threads() -> int:
    """min(4, cores): more intra-op threads than that rarely help a batch-1 forward."""
    return max(1, min(4, os.cpu_count() or 1))


@runtime_checkable
class Target(Protocol):
    """The contract every measurement target keeps (tested for every target by :mod:`lts.testing.target`).

    Instances are frozen and picklable (they go to child processes and Ray nodes): a copy, in
    any process, has the same ``key()``, ``fingerprint()`` and ``describe()``.
    """

    name: str  # names the provider: part of key()
    threads: int  # intra-op threads, >= 1
    precision: str  # "fp32", or "int8": graphs are measured with int8 weights (lts.cost.quantize)

    def session(self, path: str | os.PathLike, spin: bool = True) -> Any:
        """An ONNX Runtime InferenceSession for the graph at `path`, set up the way this target measures.

        It runs the graph as it is (a precision other than fp32 is applied to a graph before, by
        ``lts.cost.measure``), on ``threads`` intra-op threads. ``spin=False``: its worker threads
        sleep as soon as a run ends instead of spinning for the next one (the reference graph timed
        beside a measurement, so it never competes with it).
        """

    def key(self) -> dict[str, Any]:
        """Settings of this target that change measured values (part of every cache key).

        JSON data, the same on every call, and different whenever a setting that changes a
        measurement differs (threads, precision, name/provider, and the target's own settings).
        """

    def fingerprint(self) -> dict[str, Any]:
        """What makes a figure specific to this hardware and runtime; ``fingerprint()["id"]`` is a short hash.

        JSON data describing the hardware (not only its id), the same in every process on this
        machine, and independent of the settings (threads, precision: those are ``key()``'s).
        """

    def describe(self) -> str:
        """One line for reports: the provider sessions run on, the threads, the precision when not fp32, device."""

    def lock(self, exclusive: bool) -> Any:
        """Context manager: exclusive while timing, shared while measuring memory, across processes.

        One lock per machine, whatever the settings: while one process holds it exclusively no
        other (of any user, any target setting) gets it; shared holders coexist.
        """

    def reset_peak_memory(self) -> bool:
        """Start a peak-memory window in this process; False if this target can only sample from outside.

        True: ``peak_memory_bytes()`` from now on includes whatever was allocated since, even if
        freed, and forgets what came before.
        """

    def peak_memory_bytes(self) -> int:
        """Peak memory of this process since the last reset (bytes)."""

    def memory_bytes(self) -> int:
        """Memory of this process now (bytes): the baseline a peak is measured against."""


@lru_cache(maxsize=1)
def cpu_fingerprint() -> dict[str, Any]:
    """CPU model, cores, OS and ONNX Runtime version of this machine, with a short id under "id"."""
    import onnxruntime

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "machine": platform.machine(), "cores": os.cpu_count(),
                            "system": platform.system(), "onnxruntime": onnxruntime.__version__}
    info["id"] = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:10]
    return info


@dataclass(frozen=True)
class TargetSettings(Settings):
    """The three settings that pick a Target, as every command that measures or runs a graph offers them."""

    target: str = setting("cpu", "where graphs are measured (lts/cost/target.py: TARGETS)", Choice(lambda: TARGETS))
    threads: int | None = setting(None, "ONNX Runtime intra-op threads (none: the target's default, min(4, cores) "
                                        "on the CPU)", Optional(Integer(ge=1)))
    precision: str = setting("fp32", "weights of the measured graphs: fp32, or int8 (each graph quantized with "
                                     "ONNX Runtime's dynamic quantization first, as generate_text.py --precision "
                                     "int8 runs it)", Choice(PRECISIONS))

    def make(self) -> Target:
        return make_target(self.target, self.threads, self.precision)


@dataclass(frozen=True)
class CPUTarget(Settings):
    """ONNX Runtime's CPU execution provider, `threads` intra-op threads, sequential execution.

    Peak memory: the kernel's high-water mark (``VmHWM`` after ``clear_refs``) where Linux allows
    it, else (or with ``memory_probe="sampled"``) the caller samples RSS from outside. Lock: one
    lock file per machine in the temp folder, open to every user, so no two LTS processes here,
    whoever runs them, time at the same moment.
    """

    threads: int = setting(help="ONNX Runtime intra-op threads", check=Integer(ge=1), factory=default_threads,
                           flag=False)
    name: str = "cpu"
    graph_optimization: str = setting("all", "ONNX Runtime GraphOptimizationLevel",
                                      Choice(("disable", "basic", "extended", "all")), flag=False)
    memory_probe: str = setting("auto", "auto: the kernel's high-water mark where available; sampled: RSS sampled "
                                        "from outside", Choice(("auto", "sampled")), flag=False)
    precision: str = borrow(TargetSettings, "precision", flag=False)  # int8: every measured graph is first quantized

    def providers(self) -> list[Any]:
        return ["CPUExecutionProvider"]

    def session_settings(self) -> dict[str, Any]:
        """The ``SessionOptions`` attributes this target sets (enum values by name): plain data, so a peer
        run in another environment (benchmarks/_optimum_worker.py) gets exactly the same session set-up."""
        level = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                 "all": "ORT_ENABLE_ALL"}[self.graph_optimization]
        return {"intra_op_num_threads": self.threads,  # ORT ignores OMP_NUM_THREADS
                "inter_op_num_threads": 1, "execution_mode": "ORT_SEQUENTIAL", "graph_optimization_level": level,
                "log_severity_level": 3}

    def session_options(self) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        for name, value in self.session_settings().items():
            if name == "execution_mode":
                value = getattr(ort.ExecutionMode, value)
            elif name == "graph_optimization_level":
                value = getattr(ort.GraphOptimizationLevel, value)
            setattr(so, name, value)
        return so

    def session(self, path: str | os.PathLike, spin: bool = True) -> Any:
        import onnxruntime as ort

        options = self.session_options()
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), options, providers=self.providers())

    def key(self) -> dict[str, Any]:
        return {"target": self.name, "threads": self.threads, "graph_optimization": self.graph_optimization,
                "memory_probe": self.memory_probe, "precision": self.precision}

    def fingerprint(self) -> dict[str, Any]:
        return dict(cpu_fingerprint())

    def describe(self) -> str:
        hw = self.fingerprint()
        weights = "" if self.precision == "fp32" else f", {self.precision} weights (dynamic quantization)"
        return (f"ONNX Runtime {hw['onnxruntime']} {self.providers()[0]}, {self.threads} threads{weights}, "
                f"{hw['cpu'] or hw['machine']} ({hw['cores']} cores)")

    def lock_path(self) -> Path:
        return Path(tempfile.gettempdir()) / "lts-measure.lock"

    def lock(self, exclusive: bool) -> Any:
        return file_lock(self.lock_path(), exclusive)

    def reset_peak_memory(self) -> bool:
        return self.memory_probe == "auto" and procs.reset_peak_rss()

    def peak_memory_bytes(self) -> int:
        return procs.peak_rss_bytes()

    def memory_bytes(self) -> int:
        return procs.rss_bytes()


TARGETS: dict[str, type] = {"cpu": CPUTarget}


def check_measurable(platform_name: str | None = None) -> None:
    """One clear error where measured objectives cannot run (rather than one failed candidate per architecture)."""
    name = platform_name or sys.platform
    if not name.startswith(MEASURED_PLATFORMS):
        raise LTSError(f"measured objectives (latency, memory) run on Linux and macOS, not on {name}; "
                       "search the unmeasured ones (--objectives non_embedding_params,onnx_file_mb) or use WSL")


def make_target(name: str = "cpu", threads: int | None = None, precision: str = "fp32") -> Target:
    """A Target by name (``--target``); `threads` None means the target's default; `precision` its weights."""
    try:
        cls = TARGETS[name]
    except KeyError:
        raise LTSError(f"unknown target {name!r} (choose from {', '.join(TARGETS)})") from None
    return cls(precision=precision) if threads is None else cls(threads=threads, precision=precision)
