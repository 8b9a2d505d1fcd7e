"""Writing ONNX graphs directly with onnx.helper (milliseconds, no torch), for any family.

A family's graph writer (e.g. ``lts/families/gpt2/graph.py``) adds nodes to a :class:`Graph`, which records
each weight by name and shape only; :func:`Graph.spec` gives a :class:`GraphSpec` (the small ModelProto
plus the weights' names and shapes), and :func:`write_onnx` streams it to one self-contained .onnx file with
weights from a :data:`WeightFn`: :func:`random_weights`, :class:`tiled_weights` (fast stand-ins for cost
measurement) or :func:`state_dict_weights` (a transformers model's, to serve it). A generation graph names
its cache inputs and outputs with :func:`kv_names`.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib operators
WeightFn = Callable[[str, tuple[int, ...]], np.ndarray]


def is_gain(name: str, shape: tuple[int, ...]) -> bool:
    """A normalisation gain (a 1-D ``*.weight``): initialised to ones, like a fresh model's."""
    return len(shape) == 1 and name.endswith("weight")


def random_weights(seed: int = 0, std: float = 0.02) -> WeightFn:
    """GPT-2-like initial weights (normal(0, std) matrices, LayerNorm gain 1, bias 0).

    Values do not change ONNX Runtime's work, but distinct random tensors keep any
    exporter or optimizer from folding or de-duplicating them, as it would zeros.
    """
    rng = np.random.default_rng(seed)

    def make(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if is_gain(name, shape):
            return np.ones(shape, np.float32)
        out = rng.standard_normal(shape, dtype=np.float32)
        out *= std
        return out

    return make


TRANSPOSED = ".T"  # a graph weight named "<state dict name>.T" holds that tensor transposed (see state_dict_weights)


def state_dict_weights(state: Mapping[str, object]) -> WeightFn:
    """Weights from a transformers state dict (torch tensors or arrays), e.g. to verify the graph. A graph weight
    named ``<name>.T`` (:data:`TRANSPOSED`) that the state dict does not hold is its ``<name>`` transposed: a graph
    that multiplies by a ``torch.nn.Linear``'s weight (stored (out, in)) reads it as (in, out) directly, instead
    of through a Transpose that ONNX Runtime folds into a second copy when it loads (~30 % of a Llama's peak)."""

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        flip = name not in state and name.endswith(TRANSPOSED)
        t = state[name.removesuffix(TRANSPOSED)] if flip else state[name]
        arr = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        arr = np.ascontiguousarray(arr.T if flip else arr, dtype=np.float32)
        if arr.shape != shape:
            raise ValueError(f"{name}: shape {arr.shape}, expected {shape}")
        return arr

    return get


@dataclass(frozen=True)
class GraphSpec:
    """A graph without its weights: the small ModelProto plus the (name, shape) of each weight."""

    model: onnx.ModelProto
    weights: tuple[tuple[str, tuple[int, ...]], ...]


class Graph:
    """Node accumulator; weights are recorded by name/shape and written later, streamed."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.small: list[onnx.TensorProto] = []
        self.weights: list[tuple[str, tuple[int, ...]]] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.small.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, name: str, shape: tuple[int, ...]) -> str:
        self.weights.append((name, shape))
        return name

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def ops(self, op_type: str, inputs: list[str], n_out: int, unused: tuple[int, ...] = (), **attrs) -> list[str]:
        """A node with `n_out` outputs; those at the indices `unused` (optional outputs) are left unnamed ("")."""
        self._n += 1
        outs = ["" if k in unused else f"{op_type.lower()}_{self._n}_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs

    def spec(self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
             opset: int = OPSET) -> GraphSpec:
        """The graph so far as a :class:`GraphSpec` (opset :data:`OPSET` unless given; IR version 8, 10 from opset
        21 on, the oldest each opset allows)."""
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.small)
        opsets = [helper.make_opsetid("", opset)]
        if any(node.domain == MS_DOMAIN for node in self.nodes):  # ONNX Runtime's contrib ops (fused attention)
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name="lts")
        model.ir_version = 8 if opset <= 18 else 10
        return GraphSpec(model, tuple(self.weights))


def kv_names(n_layer: int) -> tuple[list[str], list[str]]:
    """Names of the past inputs and present outputs, flat (key_0, value_0, key_1, ...)."""
    past = [f"past_{kind}_{i}" for i in range(n_layer) for kind in ("key", "value")]
    return past, ["present" + name[4:] for name in past]


# --- Streaming protobuf writer -------------------------------------------------------------
# Python protobuf copies every initializer several times (from_array, make_graph, make_model,
# SerializeToString): ~10 s for the largest default-space model. The weights are instead
# appended to the serialized small graph as GraphProto.initializer fields (protobuf merges
# repeated fields), written straight from numpy. The file is a normal, self-contained
# .onnx that onnx.load and ONNX Runtime read like any other (tested).

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tensor_header(name: str, shape: tuple[int, ...], nbytes: int) -> bytes:
    """TensorProto fields dims(1), data_type(2)=FLOAT, name(8), then raw_data(9) tag + length."""
    body = b"".join(b"\x08" + _varint(int(s)) for s in shape)
    body += b"\x10" + _varint(TensorProto.FLOAT)
    enc = name.encode()
    body += b"\x42" + _varint(len(enc)) + enc
    return body + b"\x4a" + _varint(nbytes)


def _field(tag: int, length: int) -> bytes:
    return bytes([tag]) + _varint(length)


def write_onnx(spec: GraphSpec, path: str | os.PathLike | None, weights: WeightFn | None = None) -> int:
    """Write the graph with its weights as one self-contained .onnx file; return its size in bytes.

    With path=None nothing is written and only the size is computed (deterministic).
    """
    weights = weights or random_weights()
    model = onnx.ModelProto()
    model.CopyFrom(spec.model)
    small_graph = model.graph.SerializeToString()
    model.ClearField("graph")
    head = model.SerializeToString()

    inits = []
    for name, shape in spec.weights:
        nbytes = 4 * int(np.prod(shape))
        th = _tensor_header(name, shape, nbytes)
        inits.append((name, shape, th, len(th) + nbytes))
    graph_len = len(small_graph) + sum(len(_field(0x2A, n)) + n for *_, n in inits)
    total = len(head) + len(_field(0x3A, graph_len)) + graph_len
    if path is None:
        return total
    with open(path, "wb") as f:
        f.write(head)
        f.write(_field(0x3A, graph_len))
        f.write(small_graph)
        for name, shape, th, n in inits:
            f.write(_field(0x2A, n))
            f.write(th)
            if isinstance(weights, tiled_weights):
                weights.write(f, name, shape)
                continue
            arr = weights(name, shape)
            if arr.dtype != np.float32 or arr.shape != tuple(shape):
                raise ValueError(f"weight {name}: got {arr.dtype}{arr.shape}, expected float32{shape}")
            f.write(np.ascontiguousarray(arr).data)
    return total


class tiled_weights:  # noqa: N801 - used like the other weight factories
    """Fast stand-in weights for cost measurement: one random block of `period` floats, tiled.

    Generating 100M fresh normals would cost more than measuring the model, and values do not
    change ONNX Runtime's arithmetic. Its memory they do change: ONNX Runtime stores initializers
    with identical contents once, so tensors tiled from the same start would make every block of
    one shape share its weights (an 8-layer model read 83 MiB below the same model with random
    weights). Each tensor therefore starts the tiling at its own offset (from its name): no two
    are alike, like trained weights. ``write_onnx`` streams the block without materialising the
    tensor.
    """

    def __init__(self, seed: int = 0, std: float = 0.02, period: int = 1 << 20) -> None:
        self.block = np.random.default_rng(seed).standard_normal(period, dtype=np.float32) * np.float32(std)

    def _offset(self, name: str) -> int:
        return zlib.crc32(name.encode()) % self.block.size

    def __call__(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if is_gain(name, shape):
            return np.ones(shape, np.float32)
        return np.resize(np.roll(self.block, -self._offset(name)), shape)

    def write(self, f: BinaryIO, name: str, shape: tuple[int, ...]) -> None:
        n = int(np.prod(shape))
        if is_gain(name, shape):
            f.write(np.ones(n, np.float32).data)
            return
        pos = self._offset(name)
        while n:
            chunk = self.block[pos:pos + n]
            f.write(chunk.data)
            n -= chunk.size
            pos = 0


def build_model(spec: GraphSpec, weights: WeightFn | None = None) -> onnx.ModelProto:
    """The whole ModelProto in memory, weights included (slow for big models; for tests and small graphs)."""
    weights = weights or random_weights()
    model = onnx.ModelProto()
    model.CopyFrom(spec.model)
    model.graph.initializer.extend(numpy_helper.from_array(weights(n, s), n) for n, s in spec.weights)
    return model
