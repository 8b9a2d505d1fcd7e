"""Starting the cost layer's child processes, and how a child's failure reads: :class:`MeasureError`.

Why a child: a measurement must not share threads, allocator state or imports with the search, and
a crash or hang in ONNX Runtime must cost one candidate, not the search. Children are forked from a
small fork server that has numpy and onnxruntime imported (but never created a session), so a fresh,
clean process costs milliseconds (``lts.core.procs``). Three kinds start here: the measuring child
(``lts.cost.measure``), the table child (``lts.cost.table``) and the quantizing child
(``lts.cost.scratch``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from lts.core.procs import ChildError, ChildProcess
from lts.families import graph_modules

# Imported once by the fork server (every family's graph module among them); no session is ever made there.
PRELOAD = ("numpy", "onnxruntime", "onnx", "psutil", "lts.core.onnxgraph", *graph_modules(),
           "lts.cost.measure", "lts.cost.table", "lts.cost.probes", "lts.cost.quantize")


class MeasureError(RuntimeError):
    """A measurement failed (export, ORT error, timeout, crash); the reason is the message."""


@contextmanager
def child_process(target: Callable[..., None], args: tuple, timeout_s: float, name: str) -> Iterator[ChildProcess]:
    """A fresh child running ``target(conn, *args)``; its timeout or crash (while it starts or while the caller
    talks to it) is a MeasureError with the one-line reason."""
    try:
        with ChildProcess(target, args, preload=PRELOAD, timeout_s=timeout_s, name=name) as child:
            yield child
    except ChildError as exc:
        raise MeasureError(str(exc) if exc.timed_out else f"measuring process crashed: {exc}") from None

