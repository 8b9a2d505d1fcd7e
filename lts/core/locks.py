"""Advisory file locks across processes (and users): ``flock`` on POSIX, ``msvcrt`` on Windows.

One implementation for the two locks LTS takes: the machine-wide measurement lock (timings
never overlap, whichever user runs them) and the lock of a models folder while a search swaps
its front in. Shared locks exist on POSIX; Windows has exclusive ones only, so a shared request
there is exclusive (correct, just less concurrent).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _open_shared_file(path: Path) -> int:
    """Open (creating, readable and writable by every user) the lock file; read-only if someone else owns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # created by another user without write permission for us: flock needs no write
        return os.open(path, os.O_RDONLY)
    if hasattr(os, "fchmod") and os.fstat(fd).st_uid == os.getuid():
        try:
            os.fchmod(fd, 0o666)  # the umask must not lock other users out of a machine-wide lock
        except OSError:
            pass
    return fd


@contextmanager
def file_lock(path: str | os.PathLike, exclusive: bool = True) -> Iterator[None]:
    """Hold an advisory lock on `path` for the block (blocking until it is granted)."""
    fd = _open_shared_file(Path(path))
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        else:  # pragma: no cover - Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    time.sleep(0.05)
        yield
    finally:
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            else:  # pragma: no cover - Windows
                import msvcrt

                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)
