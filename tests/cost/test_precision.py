"""INT8 as a measurement Target setting: the search measures the very graphs generate_text.py --precision int8 runs."""

from __future__ import annotations

import json

import onnx
import pytest

from lts.core.cachekeys import VERSIONS
from lts.core.errors import LTSError
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.cost.measure import DEFAULT_PROBES, measure_architecture
from lts.cost.quantize import METADATA_KEY, QUANTIZATION
from lts.cost.scratch import quantize_child
from lts.cost.settings import MeasureSettings
from lts.cost.target import CPUTarget, make_target
from lts.families.gpt2 import ArchConfig

# Blocks much larger than the embeddings: weights dominate memory, and int8 quarters them.
BIG_BLOCKS = ArchConfig(2, 256, 1024, 4, vocab_size=256, n_positions=64)
# For the measured memory: 2 x (4 x 512^2 + 2 x 512 x 2048) x 4 bytes = 25.2 MB of fp32 block weights, 6.3 MB in
# int8, so the gap (~19 MB) stands far beyond the probe's noise (~1-2 MB between runs here).
HEAVY_BLOCKS = ArchConfig(2, 512, 2048, 8, vocab_size=256, n_positions=64)
SETTINGS = MeasureSettings(seq_len=32, context=32, min_repeats=3, max_repeats=5, min_seconds=0.0, max_seconds=0.2)
WITH_GENERATION = (*DEFAULT_PROBES, "generation_memory", "decode")  # the default probes and the generation graph's


class _Pipe:
    def __init__(self) -> None:
        self.sent = []

    def send(self, message) -> None:
        self.sent.append(message)


def test_prepared_graphs_are_quantized_by_onnxruntime(tmp_path):
    """Every graph the int8 Target measures has its weight matrices in int8 (DynamicQuantizeMatMul / MatMulInteger)."""
    pipe = _Pipe()
    quantize_child(pipe, tuple((BIG_BLOCKS.to_dict(), p, p) for p in ("full", "kv", "base", "block")), "int8",
                   [str(tmp_path)])
    (kind, paths), = pipe.sent
    assert kind == "done" and set(paths) == {"full", "kv", "base", "block"}
    for part, path in paths.items():
        proto = onnx.load(path)
        ops = {n.op_type for n in proto.graph.node}
        assert "DynamicQuantizeMatMul" in ops or "MatMulInteger" in ops, (part, ops)
        assert "Gemm" not in ops and "Transpose" not in {n.op_type for n in proto.graph.node
                                                         if n.input[0].startswith("transformer.")}, part
        int8 = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8]
        assert int8, part
        # 7 bits ([-64, 64]): no x86 kernel saturates, so every CPU computes the same sums (lts.cost.quantize)
        assert max(int(abs(onnx.numpy_helper.to_array(i).astype(int)).max()) for i in int8) <= 64, part
        recorded = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
        assert recorded == {**QUANTIZATION, "version": VERSIONS["int8"]} and recorded["reduce_range"] is True, part
        if part in ("full", "kv"):  # every block weight matrix is stored in one byte an element, not four
            matrices = BIG_BLOCKS.n_layer * (4 * BIG_BLOCKS.n_embd ** 2 + 2 * BIG_BLOCKS.n_embd * BIG_BLOCKS.n_inner)
            assert sum(onnx.numpy_helper.to_array(i).size for i in int8) >= matrices, part
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{p}.int8.onnx" for p in paths)  # no fp32 left


@pytest.mark.heavy
def test_int8_target_measures_less_memory_and_keys_apart(tmp_path):
    fp32 = measure_architecture(HEAVY_BLOCKS, SETTINGS, CPUTarget(threads=1), WITH_GENERATION)
    int8 = measure_architecture(HEAVY_BLOCKS, SETTINGS, CPUTarget(threads=1, precision="int8"), WITH_GENERATION)
    assert set(int8.timings) == set(fp32.timings) == {"base", "block", "decode"}
    assert int8.get("generation_memory")["bytes"] < fp32.get("generation_memory")["bytes"] - 10_000_000
    assert int8.get("memory")["bytes"] < fp32.get("memory")["bytes"] - 10_000_000
    assert int8.get("file") == fp32.get("file")  # onnx_file_mb stays the fp32 graph's size (documented)
    keys = {EvalSettings.create(target=make_target("cpu", 1, p)).key() for p in ("fp32", "int8")}
    assert len(keys) == 2, "an int8 figure must never be served for fp32, nor the reverse"


def test_evaluator_reports_int8_in_its_conditions(tmp_path):
    settings = EvalSettings.create(target=make_target("cpu", 1, "int8"), seq_len=32, context=32,
                                   objectives=["non_embedding_params", "onnx_decode_latency_s"])
    evaluator = Evaluator(settings, tmp_path / "cache.sqlite")
    conditions = evaluator.conditions()
    assert conditions["precision"] == "int8" and "int8 weights" in conditions["describe"]
    assert conditions["context"] == 32  # a generation objective: the KV-cache length is a condition too


@pytest.mark.parametrize("bad", ["int4", "FP32", 8, None])
def test_unknown_precision_is_refused(bad):
    with pytest.raises(LTSError, match="precision"):
        CPUTarget(precision=bad)


@pytest.mark.heavy
def test_search_cli_int8_runs_and_says_so(tmp_path):
    from searchrun import rows, search, tiny_space

    search(tmp_path, "--config", tiny_space(tmp_path), "--generations", "1", "--population", "4",
               "--objectives", "non_embedding_params,onnx_decode_latency_s,onnx_generation_memory_mb",
               "--context", "16", "--seq-len", "32", "--precision", "int8", "--threads", "1", check=True)
    assert "int8 weights (dynamic quantization)" in (tmp_path / "models" / "README.md").read_text()
    assert json.loads((tmp_path / "run" / "job.json").read_text())["precision"] == "int8"
    assert rows(tmp_path / "run" / "evaluations.csv") and all(
        row["status"] == "ok" for row in rows(tmp_path / "run" / "evaluations.csv"))
    bad = search(tmp_path, "--config", tiny_space(tmp_path), "--precision", "int4", name="bad")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) <= 2 and "int4" in bad.stderr
