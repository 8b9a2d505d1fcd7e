"""The block table: latency part shapes timed many per measuring child, stored as each is timed, then composed."""

import math

import pytest

from lts.core.onnxgraph import write_onnx
from lts.cost import probes
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.cost.feeds import block_feeds
from lts.cost.measure import measure_architecture
from lts.cost.probes import Probe, Timing
from lts.cost.timing import REFERENCE, ROUNDS
from lts.families.gpt2 import ArchConfig

FAST = dict(seq_len=16, min_repeats=3, max_repeats=5, warmup=1, min_seconds=0, threads=1)
LATENCY = ["non_embedding_params", "onnx_latency_s"]
# Two share their block shape and their base (n_embd); the per-layer one shares that block shape and adds one.
A = ArchConfig(2, 64, 128, 2, vocab_size=256, n_positions=32)
B = ArchConfig(3, 64, 128, 2, vocab_size=256, n_positions=32)
MIXED = ArchConfig(2, 64, [128, 192], [2, 4], vocab_size=256, n_positions=32)


def evaluator(cache, **measure):
    return Evaluator(EvalSettings.create(objectives=LATENCY, **{**FAST, **measure}), cache, calibration_s=1e-3)


def test_each_shape_is_timed_once_stored_and_candidates_are_composed_from_it(tmp_path):
    cache = tmp_path / "c.sqlite"
    ev = evaluator(cache)
    todo = ev.untimed_parts([A, B, MIXED])
    assert [(c.archid, p) for c, p in todo] == [(A.archid, "base"), (A.archid, "block"), (MIXED.archid, "block:192x4")]
    assert [reason for _, reason in ev.time_parts(todo)] == [None, None, None]
    fresh = evaluator(cache)  # another run: everything is stored
    assert fresh.untimed_parts([A, B, MIXED]) == []
    for config in (A, B, MIXED):
        task = fresh.task(config)
        assert task.parts == ()  # no measuring child for these candidates: every part comes from the table
        r = fresh.evaluate(config)
        assert r.ok
        timings = r.measurement.get("latency")
        assert set(timings) == {"base", *config.block_parts()}
        assert all(timings[p] == fresh.cached_timing(config, p) for p in timings)
    # composition: base + one block timing per layer (the per-layer one: its two shapes)
    a, b = fresh.cached(A), fresh.cached(B)
    block = fresh.cached_timing(A, "block")
    step = block.median_s / block.reference_s * 1e-3  # a block, at the evaluator's calibration
    assert abs((b.onnx_latency_s - a.onnx_latency_s) - step) < 1e-9


def test_a_part_that_fails_is_not_stored_and_is_timed_again(tmp_path):
    cache = tmp_path / "c.sqlite"
    ev = evaluator(cache, timeout_s=0.001)  # no child writes and times a graph in a millisecond
    todo = ev.untimed_parts([A])
    reasons = [reason for _, reason in ev.time_parts(todo)]
    # the chunk's child misses its deadline: every part of the chunk fails with that reason, and nothing is stored
    assert reasons == ["timeout after 0.001s"] * 2
    again = evaluator(cache)
    assert [(c.archid, p) for c, p in again.untimed_parts([A])] == [(c.archid, p) for c, p in todo]
    assert [reason for _, reason in again.time_parts(todo)] == [None, None]
    assert again.untimed_parts([A]) == []


class _Idle:
    """A session whose runs do nothing: timed beside the reference, its repeats follow from the budget alone."""

    def run(self, outputs, feeds):
        return []


def _context_latency(ctx) -> dict[str, Timing]:
    """A "latency" probe that reports what its child gave it, one field each, instead of wall-clock figures:
    the bytes of the graph it wrote for each part, the reference graph's inputs, the settings, and the repeats
    of timing an idle session beside the reference graph (``ctx.time``)."""
    _, reference_feeds = ctx.reference()
    out = {}
    for part in ctx.parts:
        path = ctx.write_graph(part)
        size = path.stat().st_size
        path.unlink()
        out[part] = Timing(median_s=size * 1e-9, cv=ctx.settings.rel_err, repeats=ctx.time(_Idle(), {}).repeats,
                           reference_s=sum(v.size for v in reference_feeds.values()) * 1e-9,
                           drift=float(ctx.settings.seq_len))
    return out


@pytest.fixture
def context_latency():
    """The "latency" probe replaced by :func:`_context_latency` (same name, graph and version); restored after."""
    real = probes.get("latency")
    probes.register(Probe("latency", "parts", _context_latency, order=real.order, decode=real.decode,
                          version=real.version))
    try:
        yield
    finally:
        probes.register(real)


def test_a_table_timing_is_the_probe_a_candidates_child_runs(context_latency):
    """The table runs the very probe a candidate's own child runs, on the same graph, reference graph and settings:
    the probe reports what it was given, so both figures must equal what the parent computes here."""
    settings = EvalSettings.create(objectives=LATENCY, **FAST)
    own = measure_architecture(A, settings.measure_settings, settings.target, settings.run_probes, parts=("block",))
    ev = Evaluator(settings, store=_Memory(), calibration_s=1e-3)
    assert [reason for _, reason in ev.time_parts([(A, "block")])] == [None]
    s = settings.measure_settings
    reference_inputs = sum(v.size for v in block_feeds(REFERENCE.n_embd, s.seq_len).values())
    # ROUNDS rounds beside the reference, each stopping at its share of max_repeats (min_seconds is 0 here)
    repeats = ROUNDS * math.ceil(s.max_repeats / ROUNDS)
    expected = Timing(median_s=write_onnx(A.graph_spec("block"), None) * 1e-9, cv=s.rel_err, repeats=repeats,
                      reference_s=reference_inputs * 1e-9, drift=float(s.seq_len))
    assert own.get("latency") == {"block": expected}
    assert ev.cached_timing(A, "block") == expected


class _Memory:
    """A store in a dict (the Store protocol: get/put by table and key)."""

    def __init__(self):
        self.rows = {}

    def get(self, table, key):
        return self.rows.get((table, tuple(key)))

    def put(self, table, key, value, versions=None):
        self.rows[(table, tuple(key))] = value
