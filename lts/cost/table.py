"""The block table: many latency parts timed in one measuring child, each reported the moment it is timed.

A search's generation needs the timings of the part shapes (``"base"``, each block shape) that the store
lacks; :func:`measure_parts` times them up to ``TABLE_CHUNK`` per child, with the same latency-parts probe,
reference graph and lock a candidate's own child uses (``lts.cost.measure``), so the figures are the same
protocol; a chunk saves each part the child's start, its reference graph's session and its imports.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Iterator, Sequence

from lts.core.onnxgraph import tiled_weights, write_onnx
from lts.cost import probes as registry
from lts.cost.child import MeasureError, child_process
from lts.cost.measure import ProbeContext
from lts.cost.probes import Timing
from lts.cost.scratch import quantized_graphs, scratch_folders
from lts.cost.settings import MeasureSettings
from lts.cost.target import Target
from lts.cost.timing import reference_session
from lts.families import Arch, arch_from_dict, to_record

TABLE_CHUNK = 32  # parts timed by one child when a table is filled (a crash costs the rest of a chunk, tried again)


def _table_child(conn: Any, items: tuple[tuple[dict, str], ...], settings: MeasureSettings, target: Target,
                 run: Callable[[ProbeContext], dict[str, Timing]], scratch: list[str],
                 prepared: dict[str, str] | None) -> None:
    """Time each ``(record, part)`` of `items` with the latency-parts probe's `run`, exactly as a candidate's own
    child times its parts (one reference graph for all); sends ("part", (i, timing)) or ("failed", (i, reason))
    for each, the moment it is known, then ("done", None)."""
    reference = reference_session(scratch, settings, target, tiled_weights())
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
    with scratch_folders(needed) as scratch:
        prepared = quantized_graphs(tuple((r, p, str(i)) for i, (r, p) in enumerate(records)), target, scratch,
                                    settings.timeout_s * len(chunk), name)
        with child_process(_table_child, (records, settings, target, run, scratch, prepared), settings.timeout_s,
                           name) as child:
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
