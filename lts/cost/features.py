"""What a graph asks of the machine, read from the graph itself: the features the cost models fit on.

:func:`graph_features` reads an ONNX graph (a :class:`~lts.core.onnxgraph.GraphSpec`, weights declared by shape
only) at a sequence length, with ONNX's shape inference, and counts what any kernel library must do for it:

- ``weight_flops``: multiply-adds x 2 of the matrix products with a weight (MatMul/Gemm with an initializer);
- ``act_flops``: those between two activations (attention's scores and mixing);
- ``quad_elems``: elements written by the other nodes whose output grows with the square of the sequence (the
  attention scores' mask, softmax, ...);
- ``elems``: elements written by every other node (element-wise, normalisation, reshapes);
- ``weight_bytes``: bytes of the weights (what is read once per forward, and what a session holds);
- ``nodes``: how many nodes (each costs a kernel launch and its bookkeeping);
- ``largest_bytes``, ``largest_quad_bytes``: the largest single tensor a node writes that grows linearly, and
  quadratically, with the sequence (what a memory planner must hold at once);
- ``largest_weight_bytes``: the largest single weight (a constant ONNX Runtime folds into a copy while a session
  loads, such as a tied head's transposed embedding, is at most that big).

No family's fields are read: a new family's graphs get the same features without new code. The features of a
whole architecture are those of its parts added up (:func:`arch_features`), the largest tensor being the largest
of its parts'; a part's are computed once per shape and kept (a search asks for the same shapes again and again).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from lts.core.onnxgraph import GraphSpec

FEATURES = ("weight_flops", "act_flops", "quad_elems", "elems", "weight_bytes", "nodes", "largest_bytes",
            "largest_quad_bytes", "largest_weight_bytes")
# maxima, not sums, over a graph's nodes and parts
_LARGEST = ("largest_bytes", "largest_quad_bytes", "largest_weight_bytes")
_MATMULS = ("MatMul", "Gemm")
_FREE = ("Shape", "Reshape", "Unsqueeze", "Squeeze", "Constant", "Identity")  # views and metadata: no data moved


def graph_features(spec: GraphSpec, seq_len: int) -> dict[str, float]:
    """The features of `spec`'s graph run on batch 1 and `seq_len` tokens (see the module docstring)."""
    model = _with_shapes(spec, seq_len)
    shapes = _shapes(model)
    # How a tensor grows with the sequence, from its size at a second length (a dimension that merely equals
    # seq_len, say n_embd 64 at 64 tokens, does not grow): 2 for attention's scores, 1 for hidden states.
    longer = 2 * seq_len + 1
    grown = _shapes(_with_shapes(spec, longer))
    degree = {name: round(math.log(_numel(grown[name]) / _numel(s)) / math.log(longer / seq_len))
              for name, s in shapes.items() if name in grown and _numel(s) > 0}
    # a weight: a declared weight, a stored constant, or what nodes make of those alone (a tied head's Transpose)
    weights = {name for name, _ in spec.weights} | {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.input and all(name in weights for name in node.input if name):
            weights.update(name for name in node.output if name)
    out = dict.fromkeys(FEATURES, 0.0)
    out["weight_bytes"] = float(sum(4 * int(np.prod(shape)) for _, shape in spec.weights))
    out["largest_weight_bytes"] = float(max((4 * int(np.prod(shape)) for _, shape in spec.weights), default=0))
    for node in model.graph.node:
        if all(name in weights for name in node.output if name):
            continue  # folded into a constant when the session is made
        out["nodes"] += 1
        if node.op_type in _FREE:
            continue
        outputs = [shapes.get(name) for name in node.output if name]
        if node.op_type in _MATMULS:
            a, b = (shapes.get(name) for name in node.input[:2])
            flops = _matmul_flops(a, b, node)
            out["weight_flops" if any(name in weights for name in node.input[:2]) else "act_flops"] += flops
        else:
            elems = sum(_numel(s) for s in outputs if s is not None)
            quadratic = any(degree.get(name, 0) >= 2 for name in node.output if name)
            out["quad_elems" if quadratic else "elems"] += elems
        for name in node.output:
            if name in shapes:
                kind = "largest_quad_bytes" if degree.get(name, 0) >= 2 else "largest_bytes"
                out[kind] = max(out[kind], 4.0 * _numel(shapes[name]))
    return out


def arch_features(config: Any, seq_len: int) -> dict[str, float]:
    """The features of `config`'s whole forward graph, from its parts' ("base" and each block shape, times the
    layers that have it): sums, but the largest tensor is the largest of any part."""
    total = dict.fromkeys(FEATURES, 0.0)
    for part, count in (("base", 1), *((p, n) for p, (_, n) in config.block_parts().items())):
        f = part_features(config, part, seq_len)
        for name in FEATURES:
            total[name] = max(total[name], f[name]) if name in _LARGEST else total[name] + count * f[name]
    return total


def part_features(config: Any, part: str, seq_len: int) -> dict[str, float]:
    """The features of `config`'s graph `part` ("base", a block part), kept per family, part role and shape."""
    role = "base" if part == "base" else "block"
    return dict(_cached(config.family.name, role, config.part_key(part), seq_len, _Holder(config, part)))


class _Holder:
    """The architecture a cached shape's graph is written from, left out of the cache's key (equal by role and
    shape already)."""

    def __init__(self, config: Any, part: str) -> None:
        self.config, self.part = config, part

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Holder)


@lru_cache(maxsize=8192)
def _cached(family: str, role: str, shape: tuple, seq_len: int, holder: _Holder) -> tuple[tuple[str, float], ...]:
    return tuple(graph_features(holder.config.graph_spec(holder.part), seq_len).items())


def _with_shapes(spec: GraphSpec, seq_len: int) -> onnx.ModelProto:
    """`spec`'s model with its weights declared as inputs of their shapes and every symbolic input dimension fixed
    (batch 1, `seq_len` tokens), shapes inferred throughout."""
    model = onnx.ModelProto()
    model.CopyFrom(spec.model)
    graph = model.graph
    for name, shape in spec.weights:
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
    for value in graph.input:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_value = 1 if i == 0 else seq_len
    return shape_inference.infer_shapes(model, data_prop=True)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every value's static shape where shape inference found one."""
    out: dict[str, tuple[int, ...]] = {}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[value.name] = tuple(int(d.dim_value) for d in dims)
    for t in model.graph.initializer:
        out[t.name] = tuple(t.dims)
    return out


def _numel(shape: tuple[int, ...]) -> float:
    return float(np.prod(shape)) if shape else 1.0


def _matmul_flops(a: tuple[int, ...] | None, b: tuple[int, ...] | None, node: onnx.NodeProto) -> float:
    """2 x multiply-adds of a MatMul (batched, broadcast) or Gemm (with its transposes) of shapes `a`, `b`."""
    if a is None or b is None:
        return 0.0
    if node.op_type == "Gemm":
        attrs: Mapping[str, Any] = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
        n = b[0] if attrs.get("transB") else b[1]
        return 2.0 * m * k * n
    if len(b) == 1:
        return 2.0 * _numel(a)
    m = a[-2] if len(a) > 1 else 1
    batch = np.broadcast_shapes(a[:-2], b[:-2]) if len(a) > 2 or len(b) > 2 else ()
    return 2.0 * _numel(tuple(batch)) * m * a[-1] * b[-1]
