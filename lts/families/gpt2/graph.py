"""GPT-2's ONNX graphs, written directly (milliseconds, no torch): the forward the search times and the
KV-cache graph it times for generation and generate_text.py serves, both from one block writer.

:func:`write_block` writes one pre-LN block (LayerNorm, c_attn, attention, c_proj, residual, LayerNorm,
c_fc, tanh-GELU, c_proj, residual) for either graph; what differs between the two is a :class:`BlockWriter`:
how a projection is written and what attention reads.

- :class:`ForwardWriter` (batch 1, no cache): mirrors ``torch.onnx.export(GPT2LMHeadModel, dynamo=True)``
  of a forward to next-token logits (``logits_to_keep=1``): Gemm projections on (S, d), causal softmax
  attention, the same op order and shapes as the SDPA export, which decide ONNX Runtime's buffer reuse and
  so the measured peak memory. ``tests/families/test_gpt2_graph.py`` checks the logits against transformers,
  ``benchmarks/evaluators.py`` the timings against the real export.
- :class:`KVWriter` (batched, left padding, a KV cache): MatMul projections on (B, S, d), attention over
  past + new keys, the presents as outputs.

Forward shapes: ``input_ids`` int64 (1, S), dynamic S <= n_positions -> ``logits`` float32 (1, 1, vocab).
Its parts (what a composed latency adds): "base" (embeddings, mask, final LayerNorm, tied head, no block)
and one block graph per block shape; full ~= base + the sum of its blocks.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper

from lts.core.onnxgraph import MS_DOMAIN, Graph, GraphSpec, kv_names
from lts.families.gpt2 import ArchConfig, Block

PARTS = ("full", "block", "base")
EPS = 1e-5


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


def graph_spec(config: ArchConfig, part: str = "full") -> GraphSpec:
    """A graph of `config` by part name: "kv" (the generation graph), "full", "base", or one of
    ``config.block_parts()`` ("block", or a per-layer architecture's ``block:<n_inner>x<n_head>``)."""
    if part == "kv":
        return kv_graph_spec(config)
    if part.startswith("block:"):
        block, _ = config.block_parts()[part]
        return forward_graph_spec(block_config(config, block), "block")
    return forward_graph_spec(config, part)


def block_config(config: ArchConfig, block: Block) -> ArchConfig:
    """A one-layer architecture with `config`'s embeddings and `block`'s shape: its "block" graph is that block."""
    return ArchConfig(1, block.n_embd, block.n_inner, block.n_head, config.vocab_size, config.n_positions)


def i64(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


class BlockWriter:
    """What one graph writes its own way inside the shared block: projections, attention, the residual adds.

    Holds the graph, the architecture's weight shapes, and the constants both graphs share (GELU's, the
    mask's). Constants that hold a layer's ``n_inner`` or head count are made once per distinct value; a
    homogeneous architecture's keep the names they always had, so its graphs stay byte for byte what they were.
    """

    def __init__(self, g: Graph, config: ArchConfig) -> None:
        self.g, self.config, self.d = g, config, config.n_embd
        self.shapes = weight_shapes(config)
        self.made: dict[str, str] = {}

    def w(self, name: str) -> str:
        return self.g.weight(name, self.shapes[name])

    def per_layer(self, name: str, key: int, value: np.ndarray) -> str:
        full = f"{name}_{key}" if self.config.per_layer else name
        if full not in self.made:
            self.made[full] = self.g.const(full, value)
        return full

    def gelu_consts(self) -> None:
        g = self.g
        self.c_half = g.const("c_half", np.array(0.5, np.float32))
        self.c_one = g.const("c_one", np.array(1.0, np.float32))
        self.c_three = g.const("c_three", np.array(3.0, np.float32))
        self.c_gelu_a = g.const("c_gelu_a", np.array(0.044715, np.float32))
        self.c_gelu_b = g.const("c_gelu_b", np.array(math.sqrt(2.0 / math.pi), np.float32))

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.g.op("LayerNormalization", x, self.w(prefix + ".weight"), self.w(prefix + ".bias"),
                         axis=-1, epsilon=EPS)

    def gelu(self, u: str) -> str:
        """gelu_new: 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))."""
        g = self.g
        inner = g.op("Mul", g.op("Add", u, g.op("Mul", g.op("Pow", u, self.c_three), self.c_gelu_a)), self.c_gelu_b)
        return g.op("Mul", g.op("Mul", u, self.c_half), g.op("Add", g.op("Tanh", inner), self.c_one))

    # -- what each graph writes its own way
    def begin_block(self, block: Block) -> None:
        """Make the layer's shape constants (before any of its ops, where the graphs always made them)."""

    def linear(self, x: str, prefix: str, flat_in: bool = False) -> str:
        """x @ W + b of the Conv1D `prefix` (``...attn.c_attn``, ``...mlp.c_fc``, ...); `flat_in`: x is what
        :meth:`attend` returned."""
        raise NotImplementedError

    def attend(self, qkv: str, i: int, block: Block) -> str:
        """Multi-head attention of layer `i` from its c_attn output; the heads merged back to width d."""
        raise NotImplementedError

    def residual(self, x: str, y: str, after_attention: bool) -> str:
        return self.g.op("Add", x, y)


def write_block(fl: BlockWriter, x: str, i: int, block: Block) -> str:
    """Layer `i` (weights ``transformer.h.<i>.*``) of shape `block` on the residual stream `x`; the new stream."""
    b = f"transformer.h.{i}."
    fl.begin_block(block)
    ln1 = fl.layer_norm(x, b + "ln_1")
    y = fl.attend(fl.linear(ln1, b + "attn.c_attn"), i, block)
    x = fl.residual(x, fl.linear(y, b + "attn.c_proj", flat_in=True), after_attention=True)
    ln2 = fl.layer_norm(x, b + "ln_2")
    u = fl.gelu(fl.linear(ln2, b + "mlp.c_fc"))
    return fl.residual(x, fl.linear(u, b + "mlp.c_proj"), after_attention=False)


class ForwardWriter(BlockWriter):
    """Batch 1, no cache, as torch's SDPA export writes GPT-2: Gemm on (S, .) between reshapes."""

    def __init__(self, g: Graph, config: ArchConfig, mask: str = "mask") -> None:
        super().__init__(g, config)
        d = self.d
        self.mask = mask
        self.c_0, self.c_1 = g.const("c_0", np.array(0, np.int64)), g.const("c_1", np.array(1, np.int64))  # scalars
        self.c_m1 = g.const("c_m1", i64(-1))                                       # 1-D, for Slice/Unsqueeze
        self.c_ax1 = g.const("c_ax1", i64(1))
        self.shape_sd = g.const("shape_sd", i64(-1, d))          # (S, d) for the Gemms
        self.shape_bsd = g.const("shape_bsd", i64(1, -1, d))     # (1, S, d)
        self.shape_bs3d = g.const("shape_bs3d", i64(1, -1, 3 * d))
        first = config.blocks()[0]
        if not config.per_layer:  # made where a homogeneous graph always had them
            self.begin_block(first, scale=False)
        self.c_neg = g.const("c_neg", np.array(np.finfo(np.float32).min, np.float32))
        self.c_zero = g.const("c_zero", np.array(0.0, np.float32))
        if not config.per_layer:  # on q and k, like the SDPA export
            self.scale(first)
        self.gelu_consts()

    def scale(self, block: Block) -> str:
        hd = self.d // block.n_head
        return self.per_layer("c_scale", block.n_head, np.array(1.0 / math.sqrt(math.sqrt(hd)), np.float32))

    def begin_block(self, block: Block, scale: bool = True) -> None:  # type: ignore[override]
        d, f, h = self.d, block.n_inner, block.n_head
        hd = d // h
        self.shape_bsf = self.per_layer("shape_bsf", f, i64(1, -1, f))
        self.shape_sf = self.per_layer("shape_sf", f, i64(-1, f))
        self.shape_heads = self.per_layer("shape_heads", h, i64(1, -1, h, hd))
        self.shape_hshd = self.per_layer("shape_hshd", h, i64(h, -1, hd))
        self.shape_1hds = self.per_layer("shape_1hds", h, i64(1, h, hd, -1))
        if scale:
            self.c_scale = self.scale(block)

    def linear(self, x: str, prefix: str, flat_in: bool = False) -> str:
        """Reshape to (S, in), Gemm, reshape to (1, S, out), as the export writes a Conv1D."""
        g, role = self.g, prefix.rsplit(".", 2)[-2:]
        if not flat_in:
            x = g.op("Reshape", x, self.shape_sf if role == ["mlp", "c_proj"] else self.shape_sd)
        y = g.op("Gemm", x, self.w(prefix + ".weight"), self.w(prefix + ".bias"))
        out = {"c_attn": self.shape_bs3d, "c_fc": self.shape_bsf}.get(role[1], self.shape_bsd)
        return g.op("Reshape", y, out)

    def attend(self, qkv: str, i: int, block: Block) -> str:
        g = self.g
        # Same op order and shapes as the SDPA export (k, v, then q; k^T through 3-D).
        q, k, v = g.ops("Split", [qkv], 3, axis=2, num_outputs=3)
        k = g.op("Transpose", g.op("Reshape", k, self.shape_heads), perm=[0, 2, 1, 3])             # (1,h,S,hd)
        v = g.op("Transpose", g.op("Reshape", v, self.shape_heads), perm=[0, 2, 1, 3])             # (1,h,S,hd)
        q = g.op("Transpose", g.op("Reshape", q, self.shape_heads), perm=[0, 2, 1, 3])             # (1,h,S,hd)
        k = g.op("Transpose", g.op("Reshape", k, self.shape_hshd), perm=[0, 2, 1])                 # (h,hd,S)
        k = g.op("Reshape", k, self.shape_1hds)                                                    # (1,h,hd,S)
        q, k = g.op("Mul", q, self.c_scale), g.op("Mul", k, self.c_scale)
        att = g.op("Softmax", g.op("Add", g.op("MatMul", q, k), self.mask), axis=-1)               # (1,h,S,S)
        att = g.op("Where", g.op("IsNaN", att), self.c_zero, att)  # fully-masked rows, as the SDPA export does
        return g.op("Reshape", g.op("Transpose", g.op("MatMul", att, v), perm=[0, 2, 1, 3]), self.shape_sd)  # (S, d)

    def residual(self, x: str, y: str, after_attention: bool) -> str:
        # operand order as exported (it decides in-place reuse): the attention's output first
        return self.g.op("Add", y, x) if after_attention else self.g.op("Add", x, y)


def forward_graph_spec(config: ArchConfig, part: str = "full") -> GraphSpec:
    """The candidate's forward graph, or one of the pieces its latency is composed of.

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
    g = Graph()
    fl = ForwardWriter(g, config)
    w = fl.w

    if part == "block":  # the mask comes in precomputed: the whole model builds it once
        inputs = [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, "seq", d]),
                  helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, "seq", "seq"])]
        x = "hidden"
    else:
        inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "seq"])]
        seq = g.op("Gather", g.op("Shape", "input_ids"), fl.c_1, axis=0)     # S, scalar
        pos = g.op("Range", fl.c_0, seq, fl.c_1)                             # (S,)
        x = g.op("Add", g.op("Gather", w("transformer.wte.weight"), "input_ids"),
                 g.op("Gather", w("transformer.wpe.weight"), pos))           # (1, S, d)
        # Causal additive mask (1, 1, S, S): 0 where key <= query, float32 min elsewhere. Built
        # like transformers' exported sdpa mask (same-sequence test AND causal test, both
        # (1, 1, S, S) booleans), because those buffers shape ONNX Runtime's arena and peak memory.
        q_idx = g.op("Unsqueeze", pos, g.const("c_ax013", i64(0, 1, 3)))                # (1, 1, S, 1)
        k_idx = g.op("Unsqueeze", pos, g.const("c_ax012", i64(0, 1, 2)))                # (1, 1, 1, S)
        same_seq = g.op("Equal", g.op("Mul", q_idx, fl.c_0), g.op("Mul", k_idx, fl.c_0))  # all True: one sequence
        allowed = g.op("And", g.op("And", g.const("c_true", np.array(True)), same_seq),
                       g.op("LessOrEqual", k_idx, q_idx))
        fl.mask = g.op("Where", allowed, fl.c_zero, fl.c_neg)

    n_blocks = {"full": config.n_layer, "block": 1, "base": 0}[part]
    for i, block in enumerate(config.blocks()[:n_blocks]):
        x = write_block(fl, x, i, block)

    c_big = g.const("c_big", i64(2**62))
    if part == "block":  # hand back only the last position, so no (1, S, d) output is allocated per run
        g.nodes.append(helper.make_node("Slice", [x, fl.c_m1, c_big, fl.c_ax1], ["hidden_last"]))
        outputs = [helper.make_tensor_value_info("hidden_last", TensorProto.FLOAT, [1, 1, d])]
    else:
        x = fl.layer_norm(x, "transformer.ln_f")
        last = g.op("Slice", x, fl.c_m1, c_big, fl.c_ax1)                              # (1, 1, d)
        head = g.op("Transpose", "transformer.wte.weight", perm=[1, 0])                # (d, V), tied
        g.nodes.append(helper.make_node("MatMul", [last, head], ["logits"]))
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, config.vocab_size])]
        if part == "base":  # keep the mask alive (it is part of the whole model's work), cheaply
            g.nodes.append(helper.make_node("ReduceMax", [fl.mask], ["mask_max"], keepdims=0))
            outputs.append(helper.make_tensor_value_info("mask_max", TensorProto.FLOAT, []))
    return g.spec(f"lts_{config.archid}_{part}", inputs, outputs)


class KVWriter(BlockWriter):
    """Batched, with a KV cache: MatMul on (B, S, .), attention over the past and the new keys and values."""

    def __init__(self, g: Graph, config: ArchConfig) -> None:
        super().__init__(g, config)
        self.c_0, self.c_1, self.c_2 = (g.const(f"c_{k}", np.array(k, np.int64)) for k in (0, 1, 2))  # scalars
        self.c_neg = g.const("c_neg", np.array(np.finfo(np.float32).min, np.float32))
        self.c_zero = g.const("c_zero", np.array(0.0, np.float32))
        self.gelu_consts()
        self.past, self.present = kv_names(config.n_layer)
        self.mask = "mask"
        # A residual stream not yet written: name -> (c_proj's MatMul, the stream it adds to, c_proj's bias). The
        # LayerNorm that reads it next (ln_2; the next block's ln_1, or ln_f) writes it as a SkipLayerNormalization.
        self.pending: dict[str, tuple[str, str, str]] = {}
        self.bias_of: dict[str, str] = {}  # c_proj MatMul output -> its bias, not yet added

    def linear(self, x: str, prefix: str, flat_in: bool = False) -> str:
        y = self.g.op("MatMul", x, self.w(prefix + ".weight"))
        if prefix.endswith("attn.c_attn"):  # its bias is added by the attention op (attend)
            return y
        if prefix.endswith("c_proj"):  # its bias is added with the residual (residual, layer_norm)
            self.bias_of[y] = self.w(prefix + ".bias")
            return y
        return self.g.op("Add", y, self.w(prefix + ".bias"))

    def residual(self, x: str, y: str, after_attention: bool) -> str:
        """A residual add (y = a c_proj's MatMul, its bias still to add): left to the LayerNorm after it."""
        name = f"{y}_residual"
        self.pending[name] = (y, x, self.bias_of.pop(y))
        return name

    def layer_norm(self, x: str, prefix: str) -> str:
        """LayerNorm of `x`; of a pending residual stream, SkipLayerNormalization (bias + residual add + norm, the
        sum written under the stream's name): one kernel instead of three."""
        if x not in self.pending:
            return super().layer_norm(x, prefix)
        y, skip, bias = self.pending.pop(x)
        normed = self.g.op("SkipLayerNormalization", y, skip, self.w(prefix + ".weight"), self.w(prefix + ".bias"),
                           bias, domain=MS_DOMAIN, epsilon=EPS)
        self.g.nodes[-1].output.extend(["", "", x])
        return normed

    def attend(self, qkv: str, i: int, block: Block) -> str:
        """ONNX Runtime's fused MultiHeadAttention: c_attn's bias, heads, past + new keys and values into the
        presents, scaled scores + the additive mask, softmax, heads merged back: one kernel instead of ~16 ops."""
        g = self.g
        q, k, v = g.ops("Split", [qkv], 3, axis=2, num_outputs=3)
        out = g.op("MultiHeadAttention", q, k, v, self.w(f"transformer.h.{i}.attn.c_attn.bias"), "", self.mask,
                   self.past[2 * i], self.past[2 * i + 1], domain=MS_DOMAIN, num_heads=block.n_head)
        g.nodes[-1].output.extend([self.present[2 * i], self.present[2 * i + 1]])  # (B, H, P+S, D) each
        return out


def kv_graph_spec(config: ArchConfig) -> GraphSpec:
    """The candidate's generation graph: one forward with a KV cache, for prefill and decode alike.

    inputs : input_ids (B, S) int64; attention_mask (B, P+S) int64 (1 = a token, 0 = left padding);
             past_key_i / past_value_i (B, H, P, D) float32 (P = 0 for a prefill)
    outputs: logits (B, V) float32 of the last position; present_key_i / present_value_i (B, H, P+S, D)

    Positions count the row's tokens (cumsum of the mask - 1, as ``generate`` derives them), and a
    query attends to the tokens at or before it that the mask keeps, so a left-padded row computes
    what it would alone. A prefill followed by one call per new token computes what
    ``GPT2LMHeadModel`` with a KV cache does (pre-LN blocks, tanh-GELU, tied LM head on the last
    position only; tested). Masked-out keys get float32's minimum, not -inf, so a padding query
    (which sees no token) gets finite, ignored values instead of NaN. This is the graph the search
    times for ``onnx_decode_latency_s`` and ``onnx_generation_memory_mb`` and the one
    ``generate_text.py --backend onnx`` runs for a GPT-2 model, filled with its weights.
    """
    g = Graph()
    fl = KVWriter(g, config)
    w, c_0, c_1 = fl.w, fl.c_0, fl.c_1
    layout = config.kv_layout()
    past_names, present_names = fl.past, fl.present
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"])]
    inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", h, "past", hd])
               for name, (h, hd) in zip(past_names, (hh for hh in layout for _ in range(2)))]
    seq = g.op("Gather", g.op("Shape", "input_ids"), c_1, axis=0)              # S
    past_len = g.op("Gather", g.op("Shape", past_names[0]), fl.c_2, axis=0)    # P
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
    fl.mask = g.op("Where", g.op("And", causal, keep), fl.c_zero, fl.c_neg)    # (B, 1, S, P+S)

    for i, block in enumerate(config.blocks()):
        x = write_block(fl, x, i, block)

    # ln_f on every position (with the last block's residual add, fused), then the last position: (B, d)
    last = g.op("Gather", fl.layer_norm(x, "transformer.ln_f"), g.op("Sub", seq, c_1), axis=1)
    # Tied LM head on the last position only: Gemm with transB reads wte as stored (no transposed copy).
    g.nodes.append(helper.make_node("Gemm", [last, "transformer.wte.weight"], ["logits"], transB=1))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", config.vocab_size])]
    outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", h, "total", hd])
                for name, (h, hd) in zip(present_names, (hh for hh in layout for _ in range(2)))]
    return g.spec(f"lts_{config.archid}_kv", inputs, outputs)


__all__ = ["PARTS", "BlockWriter", "ForwardWriter", "KVWriter", "block_config", "forward_graph_spec", "graph_spec",
           "kv_graph_spec", "weight_shapes", "write_block"]
