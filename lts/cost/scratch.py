"""The graph files a child measures: scratch folders, graphs written into them, and their quantized copies.

Scratch: the parent makes the child's scratch folders and removes them whatever happens to the
child (a timeout or a kill leaves nothing behind). Graphs go to RAM-backed /dev/shm only when its
free space holds the largest one; otherwise (Docker's 64 MB default) to the disk temp folder, so no
scratch limit decides a result.

Precision: a Target with ``precision="int8"`` gets every graph it measures (not the reference)
quantized first (``lts.cost.quantize``, the quantizer ``generate_text.py --precision int8`` uses),
by a child of its own, so the quantizer's memory never sits in the process whose peak is measured.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lts.core.onnxgraph import tiled_weights, write_onnx
from lts.cost.child import MeasureError, child_process
from lts.cost.quantize import quantize_model
from lts.cost.target import Target
from lts.families import Arch, arch_from_dict


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


@contextmanager
def scratch_folders(needed_bytes: int) -> Iterator[list[str]]:
    """Scratch folders this process owns and removes whatever happens to the children that write into them."""
    scratch = [tempfile.mkdtemp(prefix="lts-measure-", dir=d) for d in scratch_dirs(needed_bytes)]
    try:
        yield scratch
    finally:
        for folder in scratch:  # a killed or timed-out child cannot clean up: its parent does
            shutil.rmtree(folder, ignore_errors=True)


def write_graph(scratch: list[str], name: str, config: Arch, part: str, weights: Any,
                prepared: dict[str, str] | None = None) -> tuple[Path, int]:
    """Write `part` of `config` into the first scratch folder with room; (path, bytes). A graph in
    `prepared` (part -> path: quantized beforehand, :func:`quantized_graphs`) is used as it is."""
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


def quantize_child(conn: Any, items: tuple[tuple[dict, str, str], ...], precision: str, scratch: list[str]) -> None:
    """The quantizing child: write the graph of each ``(record, part, key)`` of `items` and quantize it to
    `precision` (in a process of its own: the quantizer's memory must not stay in the measuring child, whose
    peaks count); sends {key: path}."""
    weights = tiled_weights()
    out = {}
    for config_dict, part, key in items:
        path, _ = write_graph(scratch, f"{key}.fp32.onnx", arch_from_dict(config_dict), part, weights)
        final = path.with_name(f"{key}.{precision}.onnx")
        quantize_model(path, final)
        path.unlink()
        out[key] = str(final)
    conn.send(("done", out))


def quantized_graphs(items: tuple[tuple[dict, str, str], ...], target: Target, scratch: list[str], timeout_s: float,
                     name: str) -> dict[str, str] | None:
    """{key: path} of each ``(record, part, key)`` graph quantized to the Target's precision by a child of its own
    (None on an fp32 Target)."""
    if target.precision == "fp32" or not items:
        return None
    with child_process(quantize_child, (items, target.precision, scratch), timeout_s,
                       f"{name} ({target.precision})") as child:
        kind, prepared = child.recv()
    if kind == "error":
        raise MeasureError(f"{target.precision} quantization failed: {prepared}")
    return prepared
