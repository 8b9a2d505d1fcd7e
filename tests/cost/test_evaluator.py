import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lts.core.errors import LTSError
from lts.core.onnxgraph import write_onnx
from lts.cost.child import MeasureError
from lts.cost.evaluator import EvalResult, EvalSettings, Evaluator
from lts.cost.measure import measure_architecture
from lts.cost.objectives import DEFAULT_OBJECTIVES, parse_objectives
from lts.cost.settings import MeasureSettings
from lts.cost.target import CPUTarget
from lts.families.gpt2 import ArchConfig
from lts.families.gpt2.graph import forward_graph_spec

REPO = Path(__file__).resolve().parents[2]
TINY = ArchConfig(2, 64, 128, 2, vocab_size=512, n_positions=64)
MEASURE = dict(seq_len=32, min_repeats=3, max_repeats=5, warmup=1, min_seconds=0)
FAST = dict(MEASURE, threads=1)
ONE = CPUTarget(threads=1)


def test_measure_reports_memory_file_and_timings():
    out = measure_architecture(TINY, MeasureSettings(**MEASURE), ONE, parts=("base", "block", "full"))
    assert set(out.results) == {"file", "memory", "latency"}
    assert out.get("file") == write_onnx(forward_graph_spec(TINY), None)
    assert 0 < out.get("memory")["bytes"] < 500 * 2**20
    assert out.get("memory")["sampled_bytes"] > 0
    for part in ("base", "block", "full"):
        t = out.get("latency")[part]
        # The repeat budget is split over the rounds around the reference (rounded up per round).
        assert t.median_s > 0 and 3 <= t.repeats <= 6 and t.reference_s > 0


class _ScriptedSession:
    """A session whose runs take scripted durations on a fake clock (what ``time_session`` reads)."""

    def __init__(self, clock, durations):
        self.clock, self.durations = clock, list(durations)

    def run(self, outputs, feeds):
        self.clock.now += self.durations.pop(0)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_timing_statistics_against_numpy_on_scripted_runs(monkeypatch):
    """Median, spread and drift of a timing, computed on runs of known duration, equal numpy's figures."""
    import numpy as np

    from lts.cost import timing as m

    clock = _Clock()
    monkeypatch.setattr(m, "time", clock)
    s = MeasureSettings(seq_len=8, warmup=1, min_repeats=3, max_repeats=3, min_seconds=0, rel_err=0.0)
    runs = [0.010, 0.012, 0.011]
    t = m.time_session(_ScriptedSession(clock, [9.0] + runs), {}, s)  # the warm-up run is not counted
    assert t.median_s == pytest.approx(0.011) and t.repeats == 3
    assert t.cv == pytest.approx(np.std(runs, ddof=1) / np.mean(runs))

    # Three rounds, each between two loops of the reference: the machine halves its speed at round 2.
    per_round = MeasureSettings(seq_len=8, warmup=0, min_repeats=3, max_repeats=3, min_seconds=0, rel_err=0.0)
    part = [0.05, 0.10, 0.11]
    ref_loops = iter([[0.1], [0.2], [0.2], [0.2]])  # one run a loop: 3 repeats split over 3 rounds
    part_loops = iter([[0.05], [0.10], [0.11]])

    class Loop(_ScriptedSession):
        def __init__(self, loops):
            super().__init__(clock, [])
            self.loops = loops

        def run(self, outputs, feeds):
            if not self.durations:
                self.durations = list(next(self.loops))
            super().run(outputs, feeds)

    t = m.time_beside_reference(Loop(part_loops), {}, per_round, (Loop(ref_loops), {}))
    ratios = [0.05 / 0.15, 0.10 / 0.2, 0.11 / 0.2]  # each round against the mean of the references either side
    assert t.median_s == pytest.approx(float(np.median(part)))
    assert t.median_s / t.reference_s == pytest.approx(float(np.median(ratios)))
    assert t.drift == pytest.approx(float(np.std(np.log(ratios), ddof=1)))
    assert t.repeats == 3 and t.cv == 0.0


@pytest.mark.heavy
def test_measure_memory_grows_with_model_size():
    small = measure_architecture(TINY, MeasureSettings(**MEASURE), ONE, parts=())
    big = measure_architecture(ArchConfig(2, 64, 128, 2, vocab_size=200_000, n_positions=64),
                               MeasureSettings(**MEASURE), ONE, parts=())
    # The extra 200k x 64 float32 embedding is ~48 MiB: the peak must see at least that.
    assert big.get("memory")["bytes"] - small.get("memory")["bytes"] > 40 * 2**20


@pytest.mark.heavy
def test_generation_probe_times_a_decode_step_and_counts_the_kv_cache():
    """Generation memory holds the weights plus the cache: a longer context costs its KV bytes (about three
    times: the past being read, the present being written and the step's concatenation, at the last step)."""
    cfg = ArchConfig(4, 512, 512, 8, vocab_size=512, n_positions=1024)
    short = measure_architecture(cfg, MeasureSettings(**MEASURE, context=16), ONE, ("generation_memory", "decode"))
    long = measure_architecture(cfg, MeasureSettings(**MEASURE, context=1024), ONE, ("generation_memory", "decode"))
    kv_bytes = 2 * cfg.n_layer * 1024 * cfg.n_embd * 4  # keys + values of every layer, float32: 16 MiB
    assert set(short.results) == {"generation_memory", "decode"} and set(short.timings) == {"decode"}
    weights = write_onnx(forward_graph_spec(cfg), None)
    assert short.get("generation_memory")["bytes"] > 0.8 * weights
    grown = long.get("generation_memory")["bytes"] - short.get("generation_memory")["bytes"]
    # Seen here: 48 MiB, the same to the byte in repeated runs; bounds 16 MiB either side, far beyond any noise.
    assert 2 * kv_bytes < grown < 4 * kv_bytes, (grown, kv_bytes)
    assert long.get("generation_memory")["sampled_bytes"] > 0
    t = long.get("decode")
    assert t.median_s > 0 and t.reference_s > 0


@pytest.mark.heavy
def test_generation_objectives_only_when_asked(tmp_path):
    fast = dict(FAST, context=32)
    generation = ["onnx_decode_latency_s", "onnx_generation_memory_mb"]
    plain = Evaluator(EvalSettings.create(**fast), None).evaluate(TINY)
    both = Evaluator(EvalSettings.create(objectives=[*DEFAULT_OBJECTIVES, *generation], **fast), None).evaluate(TINY)
    assert math.isnan(plain.onnx_decode_latency_s) and math.isnan(plain.onnx_generation_memory_mb)
    assert both.ok and both.onnx_decode_latency_s > 0 and both.onnx_generation_memory_mb > 0
    assert both.tolerance("onnx_decode_latency_s") > 0
    assert EvalSettings.create(**fast).key() != EvalSettings.create(objectives=[*DEFAULT_OBJECTIVES, *generation],
                                                                    **fast).key()
    only = Evaluator(EvalSettings.create(objectives=["non_embedding_params", *generation], **fast), None).evaluate(TINY)
    assert only.ok and only.onnx_decode_latency_s > 0 and math.isnan(only.onnx_latency_s)
    assert math.isnan(only.onnx_memory_mb) and only.onnx_file_mb == both.onnx_file_mb


def test_measure_failures_are_reasons_not_crashes():
    with pytest.raises(MeasureError, match="timeout"):
        measure_architecture(TINY, MeasureSettings(**{**MEASURE, "timeout_s": 0.001}), ONE)
    with pytest.raises(MeasureError):  # more tokens than positions: ONNX Runtime fails the Gather
        measure_architecture(TINY, MeasureSettings(**{**MEASURE, "seq_len": 65}), ONE, parts=("base",))


@pytest.mark.heavy
def test_only_successes_are_cached_and_a_failure_is_tried_again(tmp_path):
    cache = tmp_path / "cache.sqlite"
    timed_out = Evaluator(EvalSettings.create(**FAST, timeout_s=0.001), cache, calibration_s=1e-3).evaluate(TINY)
    assert timed_out.status.startswith("failed: timeout") and math.isnan(timed_out.onnx_latency_s)
    assert Evaluator(EvalSettings.create(**FAST), cache, calibration_s=1e-3).cached(TINY) is None

    first = Evaluator(EvalSettings.create(**FAST), cache, calibration_s=1e-3).evaluate(TINY)  # tried again
    assert first.ok and not first.cached
    assert first.non_embedding_params == TINY.non_embedding_params()
    assert first.onnx_latency_s > 0 and first.onnx_memory_mb > 0 and first.onnx_file_mb > 0
    again = Evaluator(EvalSettings.create(**FAST, timeout_s=0.001), cache, calibration_s=1e-3).evaluate(TINY)
    assert again.cached and again.values == first.values  # a success is served whatever the timeout
    # Another setting is another key: not served from this cache entry.
    assert Evaluator(EvalSettings.create(**{**FAST, "seq_len": 16}), cache).cached(TINY) is None

    bad = Evaluator(EvalSettings.create(**{**FAST, "seq_len": 65}), cache).evaluate(TINY)
    assert bad.status.startswith("failed: ") and math.isnan(bad.onnx_latency_s)


def test_a_failure_never_replaces_a_success(tmp_path):
    ev = Evaluator(EvalSettings.create(**FAST), tmp_path / "cache.sqlite", calibration_s=1e-3)
    good = ev.evaluate(TINY)
    failed = EvalResult(TINY.archid, TINY, {}, 0.1, "failed: killed by SIGKILL (out of memory?)")
    ev.store(failed)  # another process met a failure on the same candidate
    assert ev.cached(TINY).values == good.values
    ev.cache.put("results", ev._result_key(TINY.archid), json.dumps(failed.to_json()))  # even written directly
    assert ev.cached(TINY).values == good.values


def test_cached_latency_is_reported_at_the_current_calibration(tmp_path):
    """A stored latency keeps its reference timing: another moment's calibration rescales it, units stay."""
    first = Evaluator(EvalSettings.create(**FAST), tmp_path / "c.sqlite", calibration_s=1e-3).evaluate(TINY)
    t = first.measurement.get("latency")
    assert all(p.reference_s > 0 for p in t.values())
    units = t["base"].median_s / t["base"].reference_s + 2 * t["block"].median_s / t["block"].reference_s
    assert first.onnx_latency_units == pytest.approx(units)
    assert first.onnx_latency_s == pytest.approx(units * 1e-3)
    slower = Evaluator(EvalSettings.create(**FAST), tmp_path / "c.sqlite", calibration_s=3e-3).cached(TINY)
    assert slower.onnx_latency_s == pytest.approx(3 * first.onnx_latency_s)
    assert slower.onnx_latency_units == pytest.approx(first.onnx_latency_units)
    assert slower.onnx_memory_mb == first.onnx_memory_mb


@pytest.mark.heavy
def test_composed_latency_reuses_shape_timings(tmp_path):
    """A deeper model with the same block and base shapes is composed from the stored timings, not re-timed."""
    ev = Evaluator(EvalSettings.create(**FAST), tmp_path / "c.sqlite", calibration_s=1e-3)
    shallow, deep = (ArchConfig(n, 64, 128, 2, vocab_size=512, n_positions=64) for n in (2, 5))

    def units(t):
        return t.median_s / t.reference_s

    a = ev.evaluate(shallow)
    base, block = ev.cached_timing(shallow, "base"), ev.cached_timing(shallow, "block")
    assert a.ok and base is not None and block is not None
    assert a.onnx_latency_s == pytest.approx(1e-3 * (units(base) + 2 * units(block)))
    b = ev.evaluate(deep)
    assert b.ok
    # Re-timing would have stored (and used) fresh, different medians: these are the shallow model's own.
    assert ev.cached_timing(deep, "block") == block and ev.cached_timing(deep, "base") == base
    assert b.measurement.get("latency") == {"base": base, "block": block}
    assert b.onnx_latency_s == pytest.approx(1e-3 * (units(base) + 5 * units(block)))
    # A new block shape is timed: its stored timing is new, and the base is still reused.
    wide = ArchConfig(2, 64, 192, 2, vocab_size=512, n_positions=64)
    c = ev.evaluate(wide)
    assert ev.cached_timing(wide, "block") is not None and ev.cached_timing(wide, "block") != block
    assert c.onnx_latency_s == pytest.approx(1e-3 * (units(base) + 2 * units(ev.cached_timing(wide, "block"))))


def test_unmeasured_settings_are_deterministic(tmp_path):
    r1 = Evaluator(EvalSettings.create(on_target=False)).evaluate(TINY)
    r2 = Evaluator(EvalSettings.create(on_target=False)).evaluate(TINY)
    assert r1.onnx_file_mb == r2.onnx_file_mb > 0 and math.isnan(r1.onnx_latency_s)


def test_parse_objectives():
    assert parse_objectives("non_embedding_params, onnx_file_mb") == ("non_embedding_params", "onnx_file_mb")
    for bad in ("accuracy,onnx_latency_s", "onnx_latency_s", "onnx_latency_s,onnx_latency_s"):
        with pytest.raises(LTSError):
            parse_objectives(bad)


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "lts", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.mark.heavy
def test_cli_evaluate_json_and_text(tmp_path):
    folder = tmp_path / TINY.archid
    TINY.to_hf_config().save_pretrained(folder)
    r = _cli("evaluate", folder, "--seq-len", 32, "--threads", 1, "--json", "--cache", tmp_path / "c.sqlite")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["archid"] == TINY.archid and data["status"] == "ok"
    for key in ("non_embedding_params", "onnx_latency_s", "onnx_latency_cv", "onnx_memory_mb", "onnx_file_mb",
                "eval_seconds"):
        assert data[key] > 0, key
    assert data["conditions"]["seq_len"] == 32 and data["conditions"]["threads"] == 1
    assert data["conditions"]["hardware"]["cores"] >= 1
    # measured whole, once; nothing in the cache to compose or predict from, and the output says so
    assert "composed" not in data and data["composed_unavailable"].startswith("not available")
    # no calibration measured apart: the reference timed beside the whole graph is it (the latency as timed)
    import sqlite3

    (raw,) = sqlite3.connect(tmp_path / "c.sqlite").execute("select result from results").fetchone()
    stored = json.loads(raw)
    assert stored["calibration_s"] == stored["measurement"]["probes"]["latency"]["full"]["reference_s"]
    assert data["conditions"]["calibration_ms"] == round(stored["calibration_s"] * 1e3, 4)
    # once a search stored its part timings, what it composes is given beside the whole figures
    Evaluator(EvalSettings.create(seq_len=32, threads=1, context=min(512, TINY.n_positions)),
              tmp_path / "c.sqlite").evaluate(TINY)
    r = _cli("evaluate", folder, "--seq-len", 32, "--threads", 1, "--json", "--cache", tmp_path / "c.sqlite")
    data = json.loads(r.stdout)
    assert data["cached"] and set(data["composed"]) == {"onnx_latency_s", "onnx_latency_cv", "onnx_latency_units"}
    assert data["composed"]["onnx_latency_s"] > 0 and data["composed"]["onnx_latency_s"] != data["onnx_latency_s"]
    r = _cli("evaluate", folder / "config.json", "--seq-len", 32, "--threads", 1, "--cache", tmp_path / "c.sqlite")
    assert r.returncode == 0 and TINY.archid in r.stdout and "(from cache)" in r.stdout
    assert "(composed or predicted: " in r.stdout
    full = _cli("evaluate", folder, "--seq-len", 32, "--threads", 1, "--json", "--latency-mode", "full", "--no-cache")
    assert full.returncode == 0 and "composed" not in json.loads(full.stdout)  # timed whole already


@pytest.mark.parametrize("content", [
    '{"n_embd": 64, "n_inner": 128, "n_head": 2}',
    '{"n_layer": 0, "n_embd": 64, "n_inner": 128, "n_head": 2}',
    '{"n_layer": 2, "n_embd": -64, "n_inner": 128, "n_head": 2}',
    '{"n_layer": 2, "n_embd": 64, "n_inner": 128, "n_head": 2',
    None,
])
def test_cli_evaluate_bad_config_is_one_line_exit_2(tmp_path, content):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    r = _cli("evaluate", path, "--no-cache")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.heavy
def test_killed_measuring_process_is_a_reason(tmp_path, monkeypatch):
    """A crash (here: SIGKILL, as the OOM killer sends) becomes a failure reason, not a dead search."""
    import signal
    import threading

    from lts.core.procs import ChildProcess
    from lts.cost import child as child_module
    from lts.cost import scratch as scratch_module

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(scratch_module, "scratch_dirs", lambda needed: [str(scratch)])
    started: list[int] = []  # only the measuring process this test starts is killed, never another one

    class Recorded(ChildProcess):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self.pid)

    monkeypatch.setattr(child_module, "ChildProcess", Recorded)
    big = ArchConfig(4, 256, 512, 4, vocab_size=50257, n_positions=1024)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", _measure_or_error(big)))
    t.start()
    deadline = time.time() + 60
    while not started and time.time() < deadline:
        time.sleep(0.01)
    assert started, "the measuring process never started"
    os.kill(started[0], signal.SIGKILL)
    t.join(120)
    assert isinstance(box["r"], MeasureError) and "SIGKILL" in str(box["r"])
    assert scratch.is_dir() and not list(scratch.iterdir())  # the killed child's graphs are gone


def _measure_or_error(cfg):
    try:
        return measure_architecture(cfg, MeasureSettings(seq_len=512), ONE)
    except MeasureError as exc:
        return exc
