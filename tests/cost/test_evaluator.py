import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lts.core.arch import ArchConfig
from lts.core.errors import LTSError
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.cost.graph import gpt2_graph_spec, write_onnx
from lts.cost.measure import MeasureError, MeasureSettings, measure
from lts.cost.objectives import parse_objectives
from lts.cost.proxy import non_embedding_params
from lts.cost.target import CPUTarget

REPO = Path(__file__).resolve().parents[2]
TINY = ArchConfig(2, 64, 128, 2, vocab_size=512, n_positions=64)
MEASURE = dict(seq_len=32, min_repeats=3, max_repeats=5, warmup=1)
FAST = dict(MEASURE, threads=1)
ONE = CPUTarget(threads=1)


def test_measure_reports_memory_file_and_timings():
    out = measure(TINY, MeasureSettings(**MEASURE), ONE, parts=("base", "block", "full"))
    assert out.file_bytes == write_onnx(gpt2_graph_spec(TINY), None)
    assert 0 < out.memory_bytes < 500 * 2**20
    assert out.memory_sampled_bytes > 0
    for part in ("base", "block", "full"):
        t = out.timings[part]
        assert t.median_s > 0 and 3 <= t.repeats <= 5 and t.cv >= 0


def test_measure_memory_grows_with_model_size():
    small = measure(TINY, MeasureSettings(**MEASURE), ONE, parts=())
    big = measure(ArchConfig(2, 64, 128, 2, vocab_size=200_000, n_positions=64), MeasureSettings(**MEASURE), ONE,
                  parts=())
    # The extra 200k x 64 float32 embedding is ~48 MiB: the peak must see at least that.
    assert big.memory_bytes - small.memory_bytes > 40 * 2**20


def test_measure_failures_are_reasons_not_crashes():
    with pytest.raises(MeasureError, match="timeout"):
        measure(TINY, MeasureSettings(**{**MEASURE, "timeout_s": 0.001}), ONE)
    with pytest.raises(MeasureError):  # more tokens than positions: ONNX Runtime fails the Gather
        measure(TINY, MeasureSettings(**{**MEASURE, "seq_len": 65}), ONE, parts=("base",))


def test_evaluator_caches_and_records_failures(tmp_path):
    ev = Evaluator(EvalSettings.create(**FAST), tmp_path / "cache.sqlite")
    first = ev.evaluate(TINY)
    assert first.ok and not first.cached
    assert first.non_embedding_params == non_embedding_params(TINY)
    assert first.onnx_latency_s > 0 and first.onnx_memory_mb > 0 and first.onnx_file_mb > 0
    t0 = time.perf_counter()
    # a new process would see it
    again = Evaluator(EvalSettings.create(**FAST), tmp_path / "cache.sqlite").evaluate(TINY)
    assert time.perf_counter() - t0 < 0.5
    assert again.cached and again.onnx_latency_s == first.onnx_latency_s
    # Another setting is another key: not served from this cache entry.
    assert Evaluator(EvalSettings.create(**{**FAST, "seq_len": 16}), tmp_path / "cache.sqlite").cached(TINY) is None

    bad = Evaluator(EvalSettings.create(**{**FAST, "seq_len": 65}), tmp_path / "cache.sqlite").evaluate(TINY)
    assert bad.status.startswith("failed: ") and math.isnan(bad.onnx_latency_s)


def test_composed_latency_reuses_shape_timings(tmp_path):
    """A deeper model with the same block and base shapes is composed from the stored timings, not re-timed."""
    ev = Evaluator(EvalSettings.create(**FAST), tmp_path / "c.sqlite")
    shallow, deep = (ArchConfig(n, 64, 128, 2, vocab_size=512, n_positions=64) for n in (2, 5))
    a = ev.evaluate(shallow)
    base, block = ev.cached_timing(shallow, "base"), ev.cached_timing(shallow, "block")
    assert a.ok and base is not None and block is not None
    assert a.onnx_latency_s == base.median_s + 2 * block.median_s
    b = ev.evaluate(deep)
    assert b.ok
    # Re-timing would have stored (and used) fresh, different medians: these are the shallow model's own.
    assert ev.cached_timing(deep, "block") == block and ev.cached_timing(deep, "base") == base
    assert b.onnx_latency_s == base.median_s + 5 * block.median_s
    # A new block shape is timed: its stored timing is new, and the base is still reused.
    wide = ArchConfig(2, 64, 192, 2, vocab_size=512, n_positions=64)
    c = ev.evaluate(wide)
    assert ev.cached_timing(wide, "block") is not None and ev.cached_timing(wide, "block") != block
    assert c.onnx_latency_s == base.median_s + 2 * ev.cached_timing(wide, "block").median_s


def test_unmeasured_settings_are_deterministic(tmp_path):
    r1 = Evaluator(EvalSettings.create(measure=False)).evaluate(TINY)
    r2 = Evaluator(EvalSettings.create(measure=False)).evaluate(TINY)
    assert r1.onnx_file_mb == r2.onnx_file_mb > 0 and math.isnan(r1.onnx_latency_s)


def test_parse_objectives():
    assert parse_objectives("non_embedding_params, onnx_file_mb") == ("non_embedding_params", "onnx_file_mb")
    for bad in ("accuracy,onnx_latency_s", "onnx_latency_s", "onnx_latency_s,onnx_latency_s"):
        with pytest.raises(LTSError):
            parse_objectives(bad)


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "lts", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_cli_evaluate_json_and_text(tmp_path):
    folder = tmp_path / TINY.archid
    TINY.to_gpt2_config().save_pretrained(folder)
    r = _cli("evaluate", folder, "--seq-len", 32, "--threads", 1, "--json", "--cache", tmp_path / "c.sqlite")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["archid"] == TINY.archid and data["status"] == "ok"
    for key in ("non_embedding_params", "onnx_latency_s", "onnx_latency_cv", "onnx_memory_mb", "onnx_file_mb",
                "eval_seconds"):
        assert data[key] > 0, key
    assert data["conditions"]["seq_len"] == 32 and data["conditions"]["threads"] == 1
    assert data["conditions"]["hardware"]["cores"] >= 1
    r = _cli("evaluate", folder / "config.json", "--seq-len", 32, "--threads", 1, "--cache", tmp_path / "c.sqlite")
    assert r.returncode == 0 and TINY.archid in r.stdout and "(from cache)" in r.stdout


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


def test_killed_measuring_process_is_a_reason(tmp_path):
    """A crash (here: SIGKILL, as the OOM killer sends) becomes a failure reason, not a dead search."""
    import os
    import signal
    import threading

    import psutil

    big = ArchConfig(4, 256, 512, 4, vocab_size=50257, n_positions=1024)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", _measure_or_error(big)))
    t.start()
    deadline = time.time() + 60
    victim = None
    while victim is None and time.time() < deadline:
        # The measuring process is forked from the fork server (our child): it is our grandchild.
        grandchildren = [p for p in psutil.Process().children(recursive=True) if p.ppid() != os.getpid()]
        victim = grandchildren[0] if grandchildren else None
        time.sleep(0.01)
    assert victim is not None
    victim.send_signal(signal.SIGKILL)
    t.join(60)
    assert isinstance(box["r"], MeasureError) and "SIGKILL" in str(box["r"])


def _measure_or_error(cfg):
    try:
        return measure(cfg, MeasureSettings(seq_len=512), ONE)
    except MeasureError as exc:
        return exc
