"""INT8 weights for a graph: ONNX Runtime's dynamic quantization, the one quantizer LTS uses.

``generate_text.py --precision int8`` runs a model's KV graph quantized this way (cached beside
the fp32 graph, ``lts.generate.onnx_kv``), and a search with ``--precision int8`` measures every
candidate's graphs quantized this way (``lts.cost.scratch``), so the search times exactly what
generation will run. Weights become int8 (per tensor, symmetric, in 7 bits: :data:`QUANTIZATION` says
why), activations are quantized on the fly at each step (``DynamicQuantizeMatMul``); LayerNorms,
attention and the embedding lookup stay float32.

What :func:`quantize_model` produces is versioned by ``VERSIONS["int8"]`` in :mod:`lts.core.cachekeys`:
bump it there when a change here changes the int8 graph, and every INT8 copy and int8 evaluation is
made again.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from lts.core.cachekeys import VERSIONS

PRECISIONS = ("fp32", "int8")


def check_precision(precision: Any, flag: str = "--precision") -> str:
    from lts.core.errors import LTSError

    if precision not in PRECISIONS:
        raise LTSError(f"{flag} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def matmul_form(proto: Any) -> Any:
    """The same graph with every ``Gemm`` on a constant weight as ``MatMul`` (+ ``Add`` for its bias).

    ONNX Runtime's dynamic quantization rewrites ``MatMul`` on a constant only; the tied LM head
    (``Gemm(transB=1)`` over ``wte`` in the KV graph, ``MatMul(x, Transpose(wte))`` in the forward
    graph) becomes a ``MatMul`` over a transposed copy (the embedding lookup keeps reading fp32
    ``wte``, one row per token).
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    transposed = {}  # output of a Transpose(perm=[1, 0]) of an initializer -> that initializer
    for node in proto.graph.node:
        perm = [list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm"]
        if node.op_type == "Transpose" and node.input[0] in inits and perm == [[1, 0]]:
            transposed[node.output[0]] = node.input[0]

    def copy_t(weight: str) -> str:
        if weight + ".T" not in inits:
            inits[weight + ".T"] = numpy_helper.from_array(numpy_helper.to_array(inits[weight]).T.copy(), weight + ".T")
            proto.graph.initializer.append(inits[weight + ".T"])
        return weight + ".T"

    nodes = []
    for node in proto.graph.node:
        if node.op_type == "MatMul" and node.input[1] in transposed:
            nodes.append(helper.make_node("MatMul", [node.input[0], copy_t(transposed[node.input[1]])],
                                          list(node.output), name=node.name or node.output[0]))
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or len(node.input) < 2 or node.input[1] not in inits or not plain:
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            weight = copy_t(weight)
        out = node.output[0] + ".matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [out], name=(node.name or out) + ".mm"))
        if out != node.output[0]:
            nodes.append(helper.make_node("Add", [out, node.input[2]], [node.output[0]],
                                          name=(node.name or out) + ".bias"))
    used = {name for node in nodes for name in node.input} | {o.name for o in proto.graph.output}
    nodes = [n for n in nodes if not (n.op_type == "Transpose" and n.output[0] in transposed
                                      and n.output[0] not in used)]  # the head's transpose, now unused
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return proto


# How the weights are quantized: one choice for every machine, so an int8 graph or figure means the same
# wherever it was made and no key needs the CPU. ONNX Runtime's x86 kernels multiply uint8 activations by int8
# weights with VPMADDUBSW on AVX2 (and AVX-512 without VNNI), which adds two products in int16 and saturates:
# 2 x 255 x 127 overflows it, 2 x 255 x 64 does not. Weights in 7 bits (``reduce_range``: [-64, 64]) never
# saturate, so every x86 CPU computes the same exact sums, with the same kernels as 8 bits. The tiny test GPT-2
# (seeds 0-5): logits 0.014-0.017 from fp32's with 7 bits; with 8 bits 0.008-0.009 where VNNI adds exactly, but
# 0.009-0.135 on a 2-core AVX2 EPYC.
QUANTIZATION = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "reduce_range": True,
                "ops": ["MatMul"]}
METADATA_KEY = "lts.quantization"  # the int8 graph's metadata_props entry: QUANTIZATION and the version, as JSON


def quantize_model(src: str | os.PathLike, dst: str | os.PathLike,
                   reduce_range: bool = QUANTIZATION["reduce_range"]) -> dict[str, Any]:
    """Write `src`'s graph with int8 weights to `dst` (every MatMul on a constant, ``quantize_dynamic`` QInt8 in
    7 bits: :data:`QUANTIZATION`); returns what was done (for meta files and reports), which the graph's
    ``metadata_props`` also hold (under :data:`METADATA_KEY`). ``reduce_range=False`` (full 8-bit weights) is
    for benchmarks that show what the choice buys; LTS itself never passes it."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    done = {**QUANTIZATION, "reduce_range": reduce_range, "version": VERSIONS["int8"]}
    proto = matmul_form(onnx.load(str(src)))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props},
                                        METADATA_KEY: json.dumps(done, sort_keys=True)})
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "please consider pre-processing" is printed through the root logger
    try:
        quantize_dynamic(proto, str(dst), weight_type=QuantType.QInt8, reduce_range=reduce_range,
                         op_types_to_quantize=QUANTIZATION["ops"],
                         # ONNX's shape inference knows no contrib op (the fused attention's outputs are float)
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    return done
