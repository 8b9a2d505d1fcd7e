"""The one way LTS runs work in a child process: fresh, preloaded, with a deadline, a crash reason and memory.

Measurements (``lts.cost.measure``) and the model comparison (``lts.compare``) both need the
same things from a child: a clean process (its memory is its own), started in milliseconds
(forked from a server that already imported the heavy libraries), a deadline, a one-line
reason when it dies (a signal, an exit status, the last line it printed), and its peak
resident memory, seen from inside (the kernel's high-water mark) and from outside (sampled).

Protocol: the child's target is ``target(conn, *args)``; it sends ``(kind, payload)`` tuples
over ``conn``. The parent reads them with :meth:`ChildProcess.recv`, which raises
:class:`ChildError` with the reason on timeout or crash.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

MIB = 2**20


class ChildError(RuntimeError):
    """A child process timed out or died; the message is the one-line reason, ``timed_out`` says which."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


def fork_context(preload: Sequence[str]) -> Any:
    """A multiprocessing context whose children fork from a server that has `preload` imported.

    Every child is a fresh process, yet starts in milliseconds instead of re-importing heavy
    libraries. Falls back to 'spawn' where 'forkserver' is unavailable (macOS without it, Windows).
    """
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))
        return ctx
    return mp.get_context("spawn")


# ----------------------------------------------------------------------------- memory, seen from inside

def rss_bytes() -> int:
    """Resident memory of this process now (psutil: Linux, macOS, Windows)."""
    import psutil

    return int(psutil.Process().memory_info().rss)


MMAP_THRESHOLD = 1 << 20  # bytes: allocations this large always get pages of their own (fix_mmap_threshold)


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold in this process (True where it could: Linux with glibc).

    glibc raises its threshold for handing large allocations pages of their own each time such a block is
    freed, so a process that wrote a model before (a measuring child writes its graph) then serves the next
    large allocations from its heap, and a session's peak moved by up to 219 MiB with that history alone
    (benchmarks.memory_options, 32 of 40 graphs). Fixed, a peak is the same whatever ran before it."""
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(-3, MMAP_THRESHOLD))  # M_MMAP_THRESHOLD, glibc's malloc.h
    except (OSError, AttributeError):
        return False


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0, ``clear_refs``); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """This process's peak resident memory: ``VmHWM`` on Linux, else ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# ----------------------------------------------------------------------------- memory, seen from outside

class RssSampler(threading.Thread):
    """Samples a process's RSS from outside every `interval_s` until stopped; keeps the maximum (bytes)."""

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
            except Exception:  # the process is gone
                return
            time.sleep(self.interval_s)

    def stop(self) -> int:
        """Stop sampling; return the peak seen (bytes)."""
        self._stop_event.set()
        if self.is_alive():
            self.join()
        return self.peak


# ----------------------------------------------------------------------------- the child

def crash_reason(exit_code: int | None, stderr: str = "", peak_bytes: int | None = None) -> str:
    """One line saying why a child ended: the signal that killed it, or its exit status and last line."""
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        hint = " (out of memory?)" if -exit_code == getattr(signal, "SIGKILL", 9) else ""
        seen = f"; peak RSS seen {peak_bytes / MIB:.0f} MB" if peak_bytes else ""
        return f"killed by {name}{hint}{seen}"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"exited with status {exit_code}" + (f": {last[-1].strip()[:300]}" if last else "")


def _entry(target: Callable[..., None], conn: Any, args: tuple, log_path: str | None) -> None:
    if log_path:  # the child's stdout/stderr go to a file the parent reads when it crashes
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        target(conn, *args)
    except BaseException as exc:  # report everything: the parent records it as the failure reason
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}".strip()[:300]))
        except Exception:
            pass
    finally:
        conn.close()


class ChildProcess:
    """A fresh process running ``target(conn, *args)``, forked from a server with `preload` imported.

    Use as a context manager; on exit the child is killed if it still runs. ``recv`` returns the
    next ``(kind, payload)`` message and raises ChildError on timeout (``timeout_s`` counts from
    the start) or when the child dies without a message. With `log_path`, the child's stdout and
    stderr go to that file and its last line becomes part of a crash reason.
    """

    def __init__(self, target: Callable[..., None], args: tuple, *, preload: Sequence[str], timeout_s: float,
                 name: str | None = None, log_path: str | os.PathLike | None = None) -> None:
        ctx = fork_context(preload)
        self._conn, child_conn = ctx.Pipe()
        self.timeout_s = timeout_s
        self.log_path = Path(log_path) if log_path else None
        self.proc = ctx.Process(target=_entry, args=(target, child_conn, args, str(log_path) if log_path else None),
                                name=name, daemon=True)
        self.deadline = time.monotonic() + timeout_s
        self.proc.start()
        child_conn.close()
        self.samplers: list[RssSampler] = []

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def sampler(self, interval_s: float = 0.001) -> RssSampler:
        """Start sampling the child's RSS from outside; ``stop()`` the sampler for the peak."""
        s = RssSampler(self.pid, interval_s)
        self.samplers.append(s)
        s.start()
        return s

    def recv(self) -> tuple[str, Any]:
        """The next message. ChildError on timeout or when the child died without one."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0 or not self._conn.poll(remaining):
            raise ChildError(f"timeout after {self.timeout_s:g}s", timed_out=True)
        try:
            return self._conn.recv()
        except EOFError:
            raise ChildError(self._death_reason()) from None

    def send(self, message: Any) -> None:
        self._conn.send(message)

    def restart_clock(self) -> None:
        """The timeout counts from now (a child that reports each of many steps gets the timeout per step)."""
        self.deadline = time.monotonic() + self.timeout_s

    def _death_reason(self) -> str:
        self.proc.join(5)
        log = ""
        if self.log_path and self.log_path.exists():
            log = self.log_path.read_text(encoding="utf-8", errors="replace")
        peak = max((s.peak for s in self.samplers), default=0)
        return crash_reason(self.proc.exitcode, log, peak or None)

    def close(self) -> None:
        for s in self.samplers:
            s.stop()
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self._conn.close()

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
