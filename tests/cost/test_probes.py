"""Probes form a registry; the objectives asked for decide which run; a new measured objective in this file alone."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import pytest

from lts.core.errors import LTSError
from lts.core.onnxgraph import write_onnx
from lts.cost import objectives, probes
from lts.cost.evaluator import DEFAULT_OBJECTIVES, EvalResult, EvalSettings, Evaluator
from lts.cost.measure import ProbeContext
from lts.cost.objectives import Measurement, Objective, Timing
from lts.cost.probes import Probe
from lts.families.gpt2 import ArchConfig
from lts.families.gpt2.graph import forward_graph_spec

TINY = ArchConfig(2, 64, 128, 2, vocab_size=512, n_positions=64)
FAST = dict(seq_len=16, min_repeats=3, max_repeats=5, min_seconds=0, threads=1)


# ----------------------------------------------------------------------------- a new measured objective: two calls

def _count_nodes(ctx: ProbeContext) -> int:
    """The toy probe, run in the measuring child: nodes of the forward graph it writes."""
    import onnx

    path = ctx.write_graph("full")
    try:
        return len(onnx.load(str(path), load_external_data=False).graph.node)
    finally:
        path.unlink()


@pytest.fixture
def node_count() -> Iterator[str]:
    """Registers the probe "node_count" and the objective "onnx_nodes" that reads it; removes both after."""
    probes.register(Probe("node_count", "forward", _count_nodes))
    objectives.register(Objective("onnx_nodes", "nodes", +1, "ONNX graph nodes",
                                  compute=lambda c, m: math.nan if m.get("node_count") is None else m.get("node_count"),
                                  probe="node_count", integer=True))
    try:
        yield "onnx_nodes"
    finally:
        objectives.unregister("onnx_nodes")
        probes.unregister("node_count")


def _nodes_here(tmp_path: Path) -> int:
    import onnx

    path = tmp_path / "full.onnx"
    write_onnx(forward_graph_spec(TINY), path)
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def test_a_new_probe_and_objective_are_measured_when_asked_and_only_then(node_count, tmp_path):
    asked = EvalSettings.create(objectives=("non_embedding_params", node_count), **FAST)
    assert asked.probes == ("file", "node_count") and asked.forward and not asked.generation
    result = Evaluator(asked, None).evaluate(TINY)
    assert result.ok, result.status
    assert result.onnx_nodes == result.measurement.get("node_count") == _nodes_here(tmp_path) > 10
    assert result.to_row()["onnx_nodes"] == result.onnx_nodes  # a CSV column like any other
    assert set(result.measurement.results) == {"file", "node_count"}  # nothing else ran: no latency, no memory
    assert math.isnan(result.onnx_latency_s) and math.isnan(result.onnx_memory_mb)

    plain = EvalSettings.create(objectives=DEFAULT_OBJECTIVES, **FAST)
    assert "node_count" not in plain.probes
    other = Evaluator(plain, None).evaluate(TINY)
    assert other.ok and "node_count" not in other.measurement.results and math.isnan(other.onnx_nodes)
    assert other.onnx_latency_s > 0 and other.onnx_memory_mb > 0
    assert asked.key() != plain.key()

    stored = EvalResult.from_json(json.loads(json.dumps(result.to_json())))  # the record's JSON round trip
    assert stored.measurement.results == result.measurement.results


def test_a_new_probe_is_in_the_key_and_its_version_bump_changes_it(node_count):
    settings = EvalSettings.create(objectives=("non_embedding_params", node_count), on_target=False, threads=1)
    assert settings.run_probes == ("file",)  # not measuring: only the graph-less probes run
    measured = EvalSettings.create(objectives=("non_embedding_params", node_count), threads=1)
    key = measured.key()
    probes.register(Probe("node_count", "forward", _count_nodes, version=2))
    assert measured.key() != key


# ----------------------------------------------------------------------------- derivation

def test_probes_follow_the_objectives_and_budgets():
    assert objectives.probes_for(DEFAULT_OBJECTIVES) == ("file", "latency", "memory")
    assert objectives.probes_for(["non_embedding_params", "onnx_decode_latency_s"]) == ("decode", "file")
    assert objectives.probes_for(list(objectives.REGISTRY), skip_graphs=("kv",)) == ("file", "latency", "memory")
    assert objectives.probes_for(list(objectives.REGISTRY)) == ("decode", "file", "generation_memory", "latency",
                                                            "memory")
    decode = EvalSettings.create(objectives=["non_embedding_params", "onnx_decode_latency_s"], threads=1)
    assert decode.generation and not decode.forward
    generation = ["non_embedding_params", "onnx_generation_memory_mb", "onnx_decode_latency_s"]
    assert EvalSettings.create(objectives=generation, threads=1).probes == ("decode", "file", "generation_memory")
    with pytest.raises(LTSError, match="unknown objective"):
        objectives.probes_for(["accuracy"])
    with pytest.raises(LTSError, match="unknown probe"):
        EvalSettings.create(on_target=False, threads=1).__class__(on_target=False, probes=("nothing",))


def test_probe_declarations_are_checked():
    with pytest.raises(ValueError, match="graph"):
        Probe("x", "gpu", _count_nodes)
    with pytest.raises(ValueError, match="version"):
        Probe("x", "forward", _count_nodes, version=0)
    with pytest.raises(ValueError, match="parts"):
        probes.register(Probe("another_latency", "parts", _count_nodes))
    assert "another_latency" not in probes.REGISTRY
    assert [p.name for p in probes.ordered(["latency", "memory"])] == ["memory", "latency"]  # peaks first
    assert [p.name for p in probes.ordered(["decode", "generation_memory"])] == ["generation_memory", "decode"]


# ----------------------------------------------------------------------------- the measurement as a mapping

def _timing(median_s: float) -> Timing:
    return Timing(median_s=median_s, cv=0.01, repeats=5, reference_s=1e-3, drift=0.0)


RECORD: dict[str, Any] = {  # a run record line (evaluations.jsonl) as EvalResult.to_json writes it
    "archid": TINY.archid, "config": TINY.to_dict(), "values": {"onnx_memory_mb": 21.0}, "eval_seconds": 1.0,
    "status": "ok", "calibration_s": 2e-3, "hardware": "h", "node": "n",
    "measurement": {"probes": {
        "file": 1000, "memory": {"bytes": 22 * 2**20, "sampled_bytes": 20 * 2**20},
        "latency": {"base": {"median_s": 1e-3, "cv": 0.01, "repeats": 5, "reference_s": 1e-3, "drift": 0.0},
                    "block": {"median_s": 2e-3, "cv": 0.01, "repeats": 5, "reference_s": 1e-3, "drift": 0.0}},
        "decode": {"median_s": 5e-4, "cv": 0.01, "repeats": 5, "reference_s": 1e-3, "drift": 0.0}}}}


def test_records_read_as_probe_results_and_give_the_same_values_again():
    stored = EvalResult.from_json(RECORD)
    m = stored.measurement
    assert m.results == {"file": 1000, "memory": {"bytes": 22 * 2**20, "sampled_bytes": 20 * 2**20},
                         "latency": {"base": _timing(1e-3), "block": _timing(2e-3)}, "decode": _timing(5e-4)}
    assert m.calibration_s == 2e-3
    again = EvalResult.from_json(json.loads(json.dumps(stored.to_json())))
    assert again.measurement == m and stored.to_json()["measurement"] == RECORD["measurement"]
    values = {name: o.value(TINY, m) for name, o in objectives.REGISTRY.items()}
    assert values["onnx_memory_mb"] == 22 and values["onnx_memory_sampled_mb"] == 20
    assert values["onnx_latency_s"] == pytest.approx(2e-3 * (1 + 2 * 2))  # base + 2 blocks, at the calibration
    assert values["onnx_decode_latency_s"] == pytest.approx(1e-3) and math.isnan(values["onnx_generation_memory_mb"])
    assert values["onnx_file_mb"] == 1000 / 2**20
    assert m.timings == {"base": _timing(1e-3), "block": _timing(2e-3), "decode": _timing(5e-4)}
    assert m.timed and not Measurement({"file": 3}).timed


def test_a_measurement_without_probe_results_is_refused_not_read_as_empty():
    """One field per probe (``memory_bytes``, ``timings``) is no record LTS writes: refused, never read as nothing."""
    with pytest.raises(LTSError, match="probes"):
        Measurement.from_json({"memory_bytes": 5, "timings": {}})
    with pytest.raises(TypeError):
        Measurement(memory_bytes=5)  # results are a mapping of probe names, nothing else
