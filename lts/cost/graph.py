"""Build a candidate's ONNX inference graph directly with onnx.helper (milliseconds, no torch).

The graph mirrors what ``torch.onnx.export(GPT2LMHeadModel, dynamo=True)`` produces for
a forward that returns next-token logits (``logits_to_keep=1``): embeddings, ``n_layer``
pre-LN blocks (Gemm projections, split heads, causal softmax attention, tanh-GELU MLP),
final LayerNorm, and the tied LM head (``Transpose(wte)`` + ``MatMul``) applied to the
last position only. Same ops, same initializer shapes, so ONNX Runtime does the same work
and holds the same weights; ``tests/cost/test_graph.py`` checks the logits against the
transformers model with the same weights, and ``benchmarks/evaluators.py`` checks the
timings against the real export.

Shapes: input ``input_ids`` int64 (1, S) with dynamic S <= n_positions; output ``logits``
float32 (1, 1, vocab_size).
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lts.core.arch import ArchConfig, Block

OPSET = 18
WeightFn = Callable[[str, tuple[int, ...]], np.ndarray]


def weight_shapes(config: ArchConfig) -> dict[str, tuple[int, ...]]:
    """HF state-dict names and shapes of every GPT-2 parameter (Conv1D weights are (in, out))."""
    d, v, p = config.n_embd, config.vocab_size, config.n_positions
    shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (v, d), "transformer.wpe.weight": (p, d)}
    for i, f in enumerate(config.layer_values("n_inner")):
        b = f"transformer.h.{i}."
        shapes.update({
            b + "ln_1.weight": (d,), b + "ln_1.bias": (d,),
            b + "attn.c_attn.weight": (d, 3 * d), b + "attn.c_attn.bias": (3 * d,),
            b + "attn.c_proj.weight": (d, d), b + "attn.c_proj.bias": (d,),
            b + "ln_2.weight": (d,), b + "ln_2.bias": (d,),
            b + "mlp.c_fc.weight": (d, f), b + "mlp.c_fc.bias": (f,),
            b + "mlp.c_proj.weight": (f, d), b + "mlp.c_proj.bias": (d,),
        })
    shapes.update({"transformer.ln_f.weight": (d,), "transformer.ln_f.bias": (d,)})
    return shapes


def random_weights(seed: int = 0, std: float = 0.02) -> WeightFn:
    """GPT-2-like initial weights (normal(0, std) matrices, LayerNorm gain 1, bias 0).

    Values do not change ONNX Runtime's work, but distinct random tensors keep any
    exporter or optimizer from folding or de-duplicating them, as it would zeros.
    """
    rng = np.random.default_rng(seed)

    def make(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            return np.ones(shape, np.float32)
        out = rng.standard_normal(shape, dtype=np.float32)
        out *= std
        return out

    return make


def state_dict_weights(state: Mapping[str, object]) -> WeightFn:
    """Weights from a transformers state dict (torch tensors or arrays), e.g. to verify the graph."""

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        t = state[name]
        arr = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.shape != shape:
            raise ValueError(f"{name}: shape {arr.shape}, expected {shape}")
        return arr

    return get


class _Graph:
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

    def ops(self, op_type: str, inputs: list[str], n_out: int, **attrs) -> list[str]:
        self._n += 1
        outs = [f"{op_type.lower()}_{self._n}_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs


PARTS = ("full", "block", "base")


@dataclass(frozen=True)
class GraphSpec:
    """A graph without its weights: the small ModelProto plus the (name, shape) of each weight."""

    model: onnx.ModelProto
    weights: tuple[tuple[str, tuple[int, ...]], ...]


def part_spec(config: ArchConfig, part: str) -> GraphSpec:
    """A graph of `config` by part name: "kv" (the generation graph), "full", "base", or one of
    ``config.block_parts()`` ("block", or a per-layer architecture's ``block:<n_inner>x<n_head>``)."""
    if part == "kv":
        return gpt2_kv_graph_spec(config)
    if part.startswith("block:"):
        block, _ = config.block_parts()[part]
        return gpt2_graph_spec(block_config(config, block), "block")
    return gpt2_graph_spec(config, part)


def block_config(config: ArchConfig, block: Block) -> ArchConfig:
    """A one-layer architecture with `config`'s embeddings and `block`'s shape: its "block" graph is that block."""
    return ArchConfig(1, block.n_embd, block.n_inner, block.n_head, config.vocab_size, config.n_positions)


class _LayerConsts:
    """Per-layer constants (shapes that hold n_inner or the head count), made once per distinct value. A
    homogeneous architecture's keep the names they always had, so its graph is byte for byte what it was."""

    def __init__(self, g: _Graph, config: ArchConfig) -> None:
        self.g, self.per_layer, self.made = g, config.per_layer, {}

    def __call__(self, name: str, key: int, value: np.ndarray) -> str:
        full = f"{name}_{key}" if self.per_layer else name
        if full not in self.made:
            self.made[full] = self.g.const(full, value)
        return full


def gpt2_graph_spec(config: ArchConfig, part: str = "full") -> GraphSpec:
    """The candidate's graph, or one of the two pieces its latency is composed of.

    part="full":  input_ids (1, S) int64 -> logits (1, 1, vocab): the whole model.
    part="block": hidden (1, S, d) + additive causal mask (1, 1, S, S) -> last position
                  (1, 1, d): one transformer block, weights named as layer 0.
    part="base":  input_ids (1, S) -> logits (1, 1, vocab) + max of the mask: embeddings,
                  causal mask, final LayerNorm and tied LM head, no blocks.
    full ~= base + the sum of its blocks (a per-layer architecture's "block" is each of
    :func:`block_config`'s one-layer architectures).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if part == "block" and config.per_layer:
        raise ValueError("a per-layer architecture has a block of each shape: build block_config(config, block)'s")
    d = config.n_embd
    g = _Graph()
    per = _LayerConsts(g, config)
    shapes = weight_shapes(config)
    w = lambda name: g.weight(name, shapes[name])  # noqa: E731

    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    c_0, c_1 = g.const("c_0", np.array(0, np.int64)), g.const("c_1", np.array(1, np.int64))  # scalars
    c_m1 = g.const("c_m1", i64(-1))                                       # 1-D, for Slice/Unsqueeze
    c_ax1 = g.const("c_ax1", i64(1))
    shape_sd = g.const("shape_sd", i64(-1, d))          # (S, d) for the Gemms
    shape_bsd = g.const("shape_bsd", i64(1, -1, d))     # (1, S, d)
    shape_bs3d = g.const("shape_bs3d", i64(1, -1, 3 * d))
    blocks = config.blocks()
    f0, h0 = (blocks[0].n_inner, blocks[0].n_head) if blocks else (0, 1)  # made where a homogeneous graph had them
    if not config.per_layer:
        per("shape_bsf", f0, i64(1, -1, f0))
        per("shape_sf", f0, i64(-1, f0))
        per("shape_heads", h0, i64(1, -1, h0, d // h0))
        per("shape_hshd", h0, i64(h0, -1, d // h0))
        per("shape_1hds", h0, i64(1, h0, d // h0, -1))
    c_neg = g.const("c_neg", np.array(np.finfo(np.float32).min, np.float32))
    c_zero = g.const("c_zero", np.array(0.0, np.float32))
    if not config.per_layer:  # on q and k, like the SDPA export
        per("c_scale", h0, np.array(1.0 / math.sqrt(math.sqrt(d // h0)), np.float32))
    c_half = g.const("c_half", np.array(0.5, np.float32))
    c_one = g.const("c_one", np.array(1.0, np.float32))
    c_three = g.const("c_three", np.array(3.0, np.float32))
    c_gelu_a = g.const("c_gelu_a", np.array(0.044715, np.float32))
    c_gelu_b = g.const("c_gelu_b", np.array(math.sqrt(2.0 / math.pi), np.float32))

    if part == "block":  # the mask comes in precomputed: the whole model builds it once
        inputs = [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, "seq", d]),
                  helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, "seq", "seq"])]
        x, mask = "hidden", "mask"
    else:
        inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "seq"])]
        seq = g.op("Gather", g.op("Shape", "input_ids"), c_1, axis=0)        # S, scalar
        pos = g.op("Range", c_0, seq, c_1)                                    # (S,)
        x = g.op("Add", g.op("Gather", w("transformer.wte.weight"), "input_ids"),
                 g.op("Gather", w("transformer.wpe.weight"), pos))            # (1, S, d)
        # Causal additive mask (1, 1, S, S): 0 where key <= query, float32 min elsewhere. Built
        # like transformers' exported sdpa mask (same-sequence test AND causal test, both
        # (1, 1, S, S) booleans), because those buffers shape ONNX Runtime's arena and peak memory.
        q_idx = g.op("Unsqueeze", pos, g.const("c_ax013", i64(0, 1, 3)))                # (1, 1, S, 1)
        k_idx = g.op("Unsqueeze", pos, g.const("c_ax012", i64(0, 1, 2)))                # (1, 1, 1, S)
        same_seq = g.op("Equal", g.op("Mul", q_idx, c_0), g.op("Mul", k_idx, c_0))      # all True: one sequence
        allowed = g.op("And", g.op("And", g.const("c_true", np.array(True)), same_seq),
                       g.op("LessOrEqual", k_idx, q_idx))
        mask = g.op("Where", allowed, c_zero, c_neg)

    n_blocks = {"full": config.n_layer, "block": 1, "base": 0}[part]
    for i, block in enumerate(blocks[:n_blocks]):
        f, h = block.n_inner, block.n_head
        hd = d // h
        shape_bsf = per("shape_bsf", f, i64(1, -1, f))
        shape_sf = per("shape_sf", f, i64(-1, f))
        shape_heads = per("shape_heads", h, i64(1, -1, h, hd))
        shape_hshd = per("shape_hshd", h, i64(h, -1, hd))
        shape_1hds = per("shape_1hds", h, i64(1, h, hd, -1))
        c_scale = per("c_scale", h, np.array(1.0 / math.sqrt(math.sqrt(hd)), np.float32))
        b = f"transformer.h.{i}."
        ln1 = g.op("LayerNormalization", x, w(b + "ln_1.weight"), w(b + "ln_1.bias"), axis=-1, epsilon=1e-5)
        qkv = g.op("Gemm", g.op("Reshape", ln1, shape_sd), w(b + "attn.c_attn.weight"), w(b + "attn.c_attn.bias"))
        # Same op order and shapes as the SDPA export (k, v, then q; k^T through 3-D), which
        # decides ONNX Runtime's buffer reuse and so the measured peak memory.
        q, k, v = g.ops("Split", [g.op("Reshape", qkv, shape_bs3d)], 3, axis=2, num_outputs=3)
        k = g.op("Transpose", g.op("Reshape", k, shape_heads), perm=[0, 2, 1, 3])                        # (1,h,S,hd)
        v = g.op("Transpose", g.op("Reshape", v, shape_heads), perm=[0, 2, 1, 3])                        # (1,h,S,hd)
        q = g.op("Transpose", g.op("Reshape", q, shape_heads), perm=[0, 2, 1, 3])                        # (1,h,S,hd)
        k = g.op("Transpose", g.op("Reshape", k, shape_hshd), perm=[0, 2, 1])                            # (h,hd,S)
        k = g.op("Reshape", k, shape_1hds)                                                               # (1,h,hd,S)
        q, k = g.op("Mul", q, c_scale), g.op("Mul", k, c_scale)
        att = g.op("Softmax", g.op("Add", g.op("MatMul", q, k), mask), axis=-1)                          # (1,h,S,S)
        att = g.op("Where", g.op("IsNaN", att), c_zero, att)  # fully-masked rows, as torch's SDPA export does
        y = g.op("Reshape", g.op("Transpose", g.op("MatMul", att, v), perm=[0, 2, 1, 3]), shape_sd)      # (S, d)
        y = g.op("Gemm", y, w(b + "attn.c_proj.weight"), w(b + "attn.c_proj.bias"))
        x = g.op("Add", g.op("Reshape", y, shape_bsd), x)  # operand order as exported: decides in-place reuse

        ln2 = g.op("LayerNormalization", x, w(b + "ln_2.weight"), w(b + "ln_2.bias"), axis=-1, epsilon=1e-5)
        u = g.op("Gemm", g.op("Reshape", ln2, shape_sd), w(b + "mlp.c_fc.weight"), w(b + "mlp.c_fc.bias"))  # (S, f)
        u = g.op("Reshape", u, shape_bsf)                                                                # (1, S, f)
        inner = g.op("Mul", g.op("Add", u, g.op("Mul", g.op("Pow", u, c_three), c_gelu_a)), c_gelu_b)
        u = g.op("Mul", g.op("Mul", u, c_half), g.op("Add", g.op("Tanh", inner), c_one))  # gelu_new
        y = g.op("Gemm", g.op("Reshape", u, shape_sf), w(b + "mlp.c_proj.weight"), w(b + "mlp.c_proj.bias"))
        x = g.op("Add", x, g.op("Reshape", y, shape_bsd))

    c_big = g.const("c_big", i64(2**62))
    if part == "block":  # hand back only the last position, so no (1, S, d) output is allocated per run
        g.nodes.append(helper.make_node("Slice", [x, c_m1, c_big, c_ax1], ["hidden_last"]))
        outputs = [helper.make_tensor_value_info("hidden_last", TensorProto.FLOAT, [1, 1, d])]
    else:
        x = g.op("LayerNormalization", x, w("transformer.ln_f.weight"), w("transformer.ln_f.bias"),
                 axis=-1, epsilon=1e-5)
        last = g.op("Slice", x, c_m1, c_big, c_ax1)                                      # (1, 1, d)
        head = g.op("Transpose", "transformer.wte.weight", perm=[1, 0])               # (d, V), tied
        g.nodes.append(helper.make_node("MatMul", [last, head], ["logits"]))
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, config.vocab_size])]
        if part == "base":  # keep the mask alive (it is part of the whole model's work), cheaply
            g.nodes.append(helper.make_node("ReduceMax", [mask], ["mask_max"], keepdims=0))
            outputs.append(helper.make_tensor_value_info("mask_max", TensorProto.FLOAT, []))

    graph = helper.make_graph(g.nodes, f"lts_{config.archid}_{part}", inputs, outputs, initializer=g.small)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lts")
    model.ir_version = 8
    return GraphSpec(model, tuple(g.weights))




def kv_names(n_layer: int) -> tuple[list[str], list[str]]:
    """Names of the past inputs and present outputs, flat (key_0, value_0, key_1, ...)."""
    past = [f"past_{kind}_{i}" for i in range(n_layer) for kind in ("key", "value")]
    return past, ["present" + name[4:] for name in past]


def gpt2_kv_graph_spec(config: ArchConfig) -> GraphSpec:
    """The candidate's generation graph: one forward with a KV cache, for prefill and decode alike.

    inputs : input_ids (B, S) int64; attention_mask (B, P+S) int64 (1 = a token, 0 = left padding);
             past_key_i / past_value_i (B, H, P, D) float32 (P = 0 for a prefill)
    outputs: logits (B, V) float32 of the last position; present_key_i / present_value_i (B, H, P+S, D)

    Positions count the row's tokens (cumsum of the mask - 1, as ``generate`` derives them), and a
    query attends to the tokens at or before it that the mask keeps, so a left-padded row computes
    what it would alone. A prefill followed by one call per new token computes what
    ``GPT2LMHeadModel`` with a KV cache does (pre-LN blocks, tanh-GELU, tied LM head on the last
    position only; ``tests/cost/test_graph.py``). Masked-out keys get float32's minimum, not -inf,
    so a padding query (which sees no token) gets finite, ignored values instead of NaN.
    This is the graph the search times for ``onnx_decode_latency_s`` and ``onnx_generation_memory_mb``
    and the one ``generate_text.py --backend onnx`` runs for a GPT-2 model, filled with its weights.
    """
    d, n = config.n_embd, config.n_layer
    heads = config.layer_values("n_head")
    g = _Graph()
    per = _LayerConsts(g, config)
    shapes = weight_shapes(config)
    w = lambda name: g.weight(name, shapes[name])  # noqa: E731
    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    c_0, c_1, c_2 = (g.const(f"c_{k}", np.array(k, np.int64)) for k in (0, 1, 2))  # scalars
    h0 = heads[0] if heads else 1
    if not config.per_layer:  # where a homogeneous graph always had them
        per("shape_heads", h0, i64(0, 0, h0, d // h0))  # (B, S, d) -> (B, S, H, D); 0 copies the dim
    shape_model = g.const("shape_model", i64(0, 0, d))      # (B, S, H, D) -> (B, S, d)
    c_neg = g.const("c_neg", np.array(np.finfo(np.float32).min, np.float32))
    c_zero = g.const("c_zero", np.array(0.0, np.float32))
    if not config.per_layer:
        per("c_scale", h0, np.array(1.0 / math.sqrt(d // h0), np.float32))
    c_half = g.const("c_half", np.array(0.5, np.float32))
    c_one = g.const("c_one", np.array(1.0, np.float32))
    c_three = g.const("c_three", np.array(3.0, np.float32))
    c_gelu_a = g.const("c_gelu_a", np.array(0.044715, np.float32))
    c_gelu_b = g.const("c_gelu_b", np.array(math.sqrt(2.0 / math.pi), np.float32))

    past_names, present_names = kv_names(n)
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"])]
    inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", h, "past", d // h])
               for name, h in zip(past_names, (h for h in heads for _ in range(2)))]
    seq = g.op("Gather", g.op("Shape", "input_ids"), c_1, axis=0)              # S
    past_len = g.op("Gather", g.op("Shape", past_names[0]), c_2, axis=0)       # P
    total = g.op("Add", past_len, seq)                                         # P + S
    ax0, ax1 = g.const("c_ax0", i64(0)), g.const("c_ax1", i64(1))
    # Position of each new token in its row: tokens before it (padding excluded); 0 for padding itself.
    counted = g.op("Sub", g.op("CumSum", "attention_mask", c_1), c_1)          # (B, P+S)
    pos = g.op("Max", g.op("Slice", counted, g.op("Unsqueeze", past_len, ax0), g.op("Unsqueeze", total, ax0), ax1),
               c_0)                                                            # (B, S)
    x = g.op("Add", g.op("Gather", w("transformer.wte.weight"), "input_ids"),
             g.op("Gather", w("transformer.wpe.weight"), pos))                 # (B, S, d)
    # Causal over past + new (query i of the S new ones sits at column P+i) and only unmasked keys:
    # (B, 1, S, P+S) additive mask; for batch 1 without padding, all zeros when S = 1.
    causal = g.op("LessOrEqual", g.op("Unsqueeze", g.op("Range", c_0, total, c_1), ax0),
                  g.op("Unsqueeze", g.op("Range", past_len, total, c_1), ax1))  # (S, P+S)
    keep = g.op("Unsqueeze", g.op("Cast", "attention_mask", to=TensorProto.BOOL), g.const("c_ax12", i64(1, 2)))
    mask = g.op("Where", g.op("And", causal, keep), c_zero, c_neg)             # (B, 1, S, P+S)

    outputs_kv = []
    for i, h in enumerate(heads):
        hd = d // h
        shape_heads = per("shape_heads", h, i64(0, 0, h, hd))
        c_scale = per("c_scale", h, np.array(1.0 / math.sqrt(hd), np.float32))
        b = f"transformer.h.{i}."
        ln1 = g.op("LayerNormalization", x, w(b + "ln_1.weight"), w(b + "ln_1.bias"), axis=-1, epsilon=1e-5)
        qkv = g.op("Add", g.op("MatMul", ln1, w(b + "attn.c_attn.weight")), w(b + "attn.c_attn.bias"))
        q, k, v = g.ops("Split", [qkv], 3, axis=2, num_outputs=3)
        q, k, v = (g.op("Transpose", g.op("Reshape", t, shape_heads), perm=[0, 2, 1, 3]) for t in (q, k, v))
        key, value = present_names[2 * i], present_names[2 * i + 1]
        g.nodes.append(helper.make_node("Concat", [past_names[2 * i], k], [key], axis=2))      # (B, H, P+S, D)
        g.nodes.append(helper.make_node("Concat", [past_names[2 * i + 1], v], [value], axis=2))
        outputs_kv += [key, value]
        scores = g.op("Add", g.op("MatMul", g.op("Mul", q, c_scale), g.op("Transpose", key, perm=[0, 1, 3, 2])), mask)
        y = g.op("MatMul", g.op("Softmax", scores, axis=-1), value)                             # (B, H, S, D)
        y = g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), shape_model)               # (B, S, d)
        x = g.op("Add", x, g.op("Add", g.op("MatMul", y, w(b + "attn.c_proj.weight")), w(b + "attn.c_proj.bias")))
        ln2 = g.op("LayerNormalization", x, w(b + "ln_2.weight"), w(b + "ln_2.bias"), axis=-1, epsilon=1e-5)
        u = g.op("Add", g.op("MatMul", ln2, w(b + "mlp.c_fc.weight")), w(b + "mlp.c_fc.bias"))  # (B, S, f)
        inner = g.op("Mul", g.op("Add", u, g.op("Mul", g.op("Pow", u, c_three), c_gelu_a)), c_gelu_b)
        u = g.op("Mul", g.op("Mul", u, c_half), g.op("Add", g.op("Tanh", inner), c_one))        # gelu_new
        x = g.op("Add", x, g.op("Add", g.op("MatMul", u, w(b + "mlp.c_proj.weight")), w(b + "mlp.c_proj.bias")))

    last = g.op("Gather", x, g.op("Sub", seq, c_1), axis=1)                                     # (B, d)
    last = g.op("LayerNormalization", last, w("transformer.ln_f.weight"), w("transformer.ln_f.bias"),
                axis=-1, epsilon=1e-5)
    # Tied LM head on the last position only: Gemm with transB reads wte as stored (no transposed copy).
    g.nodes.append(helper.make_node("Gemm", [last, "transformer.wte.weight"], ["logits"], transB=1))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", config.vocab_size])]
    outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", h, "total", d // h])
                for name, h in zip(outputs_kv, (h for h in heads for _ in range(2)))]
    graph = helper.make_graph(g.nodes, f"lts_{config.archid}_kv", inputs, outputs, initializer=g.small)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lts")
    model.ir_version = 8
    return GraphSpec(model, tuple(g.weights))


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

    @staticmethod
    def _is_gain(name: str) -> bool:
        return name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))

    def _offset(self, name: str) -> int:
        return zlib.crc32(name.encode()) % self.block.size

    def __call__(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if self._is_gain(name):
            return np.ones(shape, np.float32)
        return np.resize(np.roll(self.block, -self._offset(name)), shape)

    def write(self, f: BinaryIO, name: str, shape: tuple[int, ...]) -> None:
        n = int(np.prod(shape))
        if self._is_gain(name):
            f.write(np.ones(n, np.float32).data)
            return
        pos = self._offset(name)
        while n:
            chunk = self.block[pos:pos + n]
            f.write(chunk.data)
            n -= chunk.size
            pos = 0


def build_gpt2_graph(config: ArchConfig, weights: WeightFn | None = None, part: str = "full") -> onnx.ModelProto:
    """The whole ModelProto in memory (slow for big models; for tests and small graphs)."""
    spec = gpt2_graph_spec(config, part)
    weights = weights or random_weights()
    model = onnx.ModelProto()
    model.CopyFrom(spec.model)
    model.graph.initializer.extend(numpy_helper.from_array(weights(n, s), n) for n, s in spec.weights)
    return model
