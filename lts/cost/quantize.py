"""INT8 weights for a graph: ONNX Runtime's dynamic quantization, the one quantizer LTS uses.

``generate_text.py --precision int8`` runs a model's KV graph quantized this way (cached beside
the fp32 graph, ``lts.generate.onnx_kv``), and a search with ``--precision int8`` measures every
candidate's graphs quantized this way (``lts.cost.measure``), so the search times exactly what
generation will run. Weights become int8 (per tensor, symmetric), activations are quantized on
the fly at each step (``DynamicQuantizeMatMul``); LayerNorms, attention and the embedding lookup
stay float32.

What :func:`quantize_model` produces is versioned by ``VERSIONS["int8"]`` in :mod:`lts.core.cachekeys`:
bump it there when a change here changes the int8 graph, and every INT8 copy and int8 evaluation is
made again.
"""

from __future__ import annotations

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


def quantize_model(src: str | os.PathLike, dst: str | os.PathLike) -> dict[str, Any]:
    """Write `src`'s graph with int8 weights to `dst` (every MatMul on a constant, ``quantize_dynamic`` QInt8);
    returns what was done (for meta files and reports)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = matmul_form(onnx.load(str(src)))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "please consider pre-processing" is printed through the root logger
    try:
        quantize_dynamic(proto, str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         # ONNX's shape inference knows no contrib op (the fused attention's outputs are float)
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "ops": ["MatMul"],
            "version": VERSIONS["int8"]}
