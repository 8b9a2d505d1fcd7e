"""Llama's ONNX graphs: exported from transformers' own Llama modules (``lts.families.exported``), except the
generation graph's layer, written with ONNX's fused operators because it measures faster.

Pieces, each made once per shape and spliced (a 30-layer model is its prologue, 30 copies of one layer and its
head):

- forward (batch 1, no cache): ``Prologue`` input_ids (1, S) -> embeddings and the additive causal mask
  (1, 1, S, S); ``Layer`` (hidden, mask) -> hidden (a ``LlamaDecoderLayer`` with its rotary embedding computed
  for positions 0..S-1), also giving its last position (the block part the cost table times); ``Head`` the final
  RMSNorm and the LM head on the last position -> logits (1, 1, V). All three exported.
- generation (a KV cache, batches left-padded): ``KVPrologue`` (exported; input_ids (B, S), attention_mask
  (B, P+S)) -> embeddings, the additive mask (B, 1, S, P+S: causal over past and new, padding masked), each new
  token's position (its row's tokens before it, as ``generate`` counts them) and the rotary embedding's cos/sin
  there (transformers' ``LlamaRotaryEmbedding``); the layer (hidden, mask, cos, sin, past_key, past_value) ->
  (hidden, present_key, present_value), the cache holding the KV heads only: :func:`fused_kv_layer` (ONNX's
  RMSNormalization, RotaryEmbedding and Attention, opset 23) by default, :func:`exported_kv_layer` (transformers'
  eager layer) as its reference; ``KVHead`` (exported) -> logits (B, V) of the last position. Why the fused layer:
  a decode step of SmolLM2-135M's shape at context 128, batch 1, 2 threads took 24.0 ms against 27.8 ms for the
  exported one (1.31x at batch 4), whose ~100 shape ops a layer (views, the KV heads' repetition) cost more than
  its attention (``benchmarks/llama_layer.py`` measures both).

Masked keys get float32's minimum, not -inf, so a padding query gets finite, ignored values. The LM head reads the
embedding when tied (one weight in the graph, as in the model). Weights are named as in ``LlamaForCausalLM``'s
state dict, a projection's with ``.T``: stored transposed (``lts.core.onnxgraph.TRANSPOSED``).
``tests/families/llama/test_llama.py`` checks the logits of every graph against transformers, prefill, decoding
and left padding included.
"""

from __future__ import annotations

import functools
from typing import Any

from onnx import TensorProto, helper

from lts.core.onnxgraph import TRANSPOSED, Graph, GraphSpec, kv_names
from lts.families.exported import Piece, Use, build_module, piece_spec, splice
from lts.families.llama import STANDARD, Block, LlamaArch

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
LAYER_OPSET = 23  # RMSNormalization, RotaryEmbedding and Attention


def _layer_config(block: Block, rope_theta: float, vocab_size: int = 8) -> Any:
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=block.hidden_size, intermediate_size=block.intermediate_size,
                         num_attention_heads=block.num_attention_heads,
                         num_key_value_heads=block.num_key_value_heads, head_dim=block.head_dim,
                         num_hidden_layers=1, vocab_size=vocab_size, rope_theta=rope_theta)
    config._attn_implementation = "eager"
    return config


@functools.cache
def _modules() -> dict[str, type]:
    """The pieces' torch modules (defined once, on first use: torch and transformers are imported only to
    export)."""
    import torch
    from transformers import DynamicCache
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding

    neg = torch.finfo(torch.float32).min

    class Prologue(torch.nn.Module):
        def __init__(self, vocab: int, d: int) -> None:
            super().__init__()
            self.embed_tokens = torch.nn.Embedding(vocab, d)

        def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pos = torch.arange(input_ids.shape[1])
            allowed = pos[None, :] <= pos[:, None]  # (S, S): key <= query
            mask = torch.where(allowed, 0.0, neg)[None, None]
            return self.embed_tokens(input_ids), mask

    class Layer(torch.nn.Module):
        def __init__(self, config: Any) -> None:
            super().__init__()
            self.layer = LlamaDecoderLayer(config, 0)
            self.rotary_emb = LlamaRotaryEmbedding(config)

        def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pos = torch.arange(hidden.shape[1])[None]
            out = self.layer(hidden, attention_mask=mask, position_ids=pos,
                             position_embeddings=self.rotary_emb(hidden, pos))
            out = out[0] if isinstance(out, tuple) else out
            return out, out[:, -1:, :]

    class Head(torch.nn.Module):
        def __init__(self, vocab: int, d: int) -> None:
            super().__init__()
            self.norm = LlamaRMSNorm(d, eps=STANDARD["rms_norm_eps"])
            self.lm_head = torch.nn.Linear(d, vocab, bias=False)

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            last = self.norm(hidden[:, -1, :])  # (B, d): a 2-D linear is a Gemm reading the weight as stored
            return torch.nn.functional.linear(last, self.lm_head.weight)

    class ForwardHead(Head):
        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            return super().forward(hidden)[:, None, :]  # (1, 1, V)

    class KVPrologue(torch.nn.Module):
        def __init__(self, config: Any, vocab: int) -> None:
            super().__init__()
            self.embed_tokens = torch.nn.Embedding(vocab, config.hidden_size)
            self.rotary_emb = LlamaRotaryEmbedding(config)
            self.half = config.head_dim // 2

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            seq, total = input_ids.shape[1], attention_mask.shape[1]
            counted = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
            positions = counted[:, total - seq:]
            query = torch.arange(total - seq, total)[:, None]  # new token i sits at column P+i
            allowed = (torch.arange(total)[None, :] <= query)[None, None] & (attention_mask[:, None, None, :] == 1)
            hidden = self.embed_tokens(input_ids)
            cos, sin = self.rotary_emb(hidden, positions)  # (B, S, head_dim): one half repeated
            return hidden, torch.where(allowed, 0.0, neg), positions, cos[..., :self.half], sin[..., :self.half]

    class KVLayer(torch.nn.Module):
        def __init__(self, config: Any) -> None:
            super().__init__()
            self.layer = LlamaDecoderLayer(config, 0)
            self.rotary_emb = LlamaRotaryEmbedding(config)

        def forward(self, hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, past_key: torch.Tensor,
                    past_value: torch.Tensor) -> tuple[torch.Tensor, ...]:
            cache = DynamicCache([(past_key, past_value)])
            out = self.layer(hidden, attention_mask=mask, position_ids=positions, past_key_values=cache,
                             use_cache=True, position_embeddings=self.rotary_emb(hidden, positions))
            out = out[0] if isinstance(out, tuple) else out
            return out, cache.layers[0].keys, cache.layers[0].values

    return {"Prologue": Prologue, "Layer": Layer, "Head": Head, "ForwardHead": ForwardHead,
            "KVPrologue": KVPrologue, "KVLayer": KVLayer}


def _piece(kind: str, key: dict[str, Any], make: Any, args: Any, inputs: tuple[str, ...], outputs: tuple[str, ...],
           dynamic: dict[str, dict[int, str]], as_stored: tuple[str, ...] = ()) -> GraphSpec:
    return piece_spec(Piece({"family": "llama", "piece": kind, **key}, lambda: build_module(make), args, inputs,
                            outputs, dynamic, as_stored))


def _block_key(arch: LlamaArch) -> dict[str, Any]:
    b = arch.block()
    return {"hidden_size": b.hidden_size, "intermediate_size": b.intermediate_size, "heads": b.num_attention_heads,
            "kv_heads": b.num_key_value_heads, "head_dim": b.head_dim, "rope_theta": arch.rope_theta}


def _ends_key(arch: LlamaArch) -> dict[str, Any]:
    return {"hidden_size": arch.hidden_size, "vocab_size": arch.vocab_size}


def prologue(arch: LlamaArch) -> GraphSpec:
    import torch

    d, v = arch.hidden_size, arch.vocab_size
    return _piece("prologue", _ends_key(arch), lambda: _modules()["Prologue"](v, d),
                  lambda: (torch.zeros((1, 7), dtype=torch.long),), ("input_ids",), ("hidden", "mask"),
                  {"input_ids": {1: "seq"}})


def layer(arch: LlamaArch) -> GraphSpec:
    import torch

    config, d = _layer_config(arch.block(), arch.rope_theta), arch.hidden_size
    return _piece("layer", _block_key(arch), lambda: _modules()["Layer"](config),
                  lambda: (torch.zeros((1, 7, d)), torch.zeros((1, 1, 7, 7))), ("hidden", "mask"),
                  ("hidden_out", "hidden_last"), {"hidden": {1: "seq"}, "mask": {2: "seq", 3: "seq"}})


def head(arch: LlamaArch, kv: bool) -> GraphSpec:
    import torch

    d, v, tied = arch.hidden_size, arch.vocab_size, arch.tie_word_embeddings
    return _piece("kv_head" if kv else "head", {**_ends_key(arch), "tied": tied},
                  lambda: _modules()["Head" if kv else "ForwardHead"](v, d),
                  lambda: (torch.zeros((2 if kv else 1, 7, d)),), ("hidden",), ("logits",),
                  {"hidden": {0: "batch", 1: "seq"} if kv else {1: "seq"}},
                  as_stored=("lm_head.weight",) if tied else ())  # a tied head reads the embedding as stored


def kv_prologue(arch: LlamaArch) -> GraphSpec:
    import torch

    config, v = _layer_config(arch.block(), arch.rope_theta), arch.vocab_size
    key = {**_ends_key(arch), "head_dim": arch.head_dim, "rope_theta": arch.rope_theta}
    return _piece("kv_prologue", key, lambda: _modules()["KVPrologue"](config, v),
                  lambda: (torch.zeros((2, 3), dtype=torch.long), torch.ones((2, 8), dtype=torch.long)),
                  ("input_ids", "attention_mask"), ("hidden", "mask", "positions", "cos", "sin"),
                  {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"}})


def exported_kv_layer(arch: LlamaArch) -> GraphSpec:
    """transformers' ``LlamaDecoderLayer`` with a cache, exported (eager attention): the family's layer with nothing
    hand-written, kept as the reference the fused layer is measured against (``benchmarks/llama_layer.py``)."""
    import torch

    config, d, b = _layer_config(arch.block(), arch.rope_theta), arch.hidden_size, arch.block()
    past = (2, b.num_key_value_heads, 5, b.head_dim)
    return _piece("kv_layer", _block_key(arch), lambda: _modules()["KVLayer"](config),
                  lambda: (torch.zeros((2, 3, d)), torch.zeros((2, 1, 3, 8)), torch.ones((2, 3), dtype=torch.long),
                           torch.zeros(past), torch.zeros(past)),
                  ("hidden", "mask", "positions", "past_key", "past_value"),
                  ("hidden_out", "present_key", "present_value"),
                  {"hidden": {0: "batch", 1: "seq"}, "mask": {0: "batch", 2: "seq", 3: "total"},
                   "positions": {0: "batch", 1: "seq"}, "past_key": {0: "batch", 2: "past"},
                   "past_value": {0: "batch", 2: "past"}})


def fused_kv_layer(arch: LlamaArch) -> GraphSpec:
    """One decoder layer with a cache, written with ONNX's fused operators (opset 23): RMSNormalization,
    RotaryEmbedding (the prologue's cos/sin of each new token's position) and Attention, which takes the KV heads
    as they are (grouped-query), appends the new keys and values to the past and adds the mask. The exported
    eager layer spends ~100 small shape ops a layer on views and the KV heads' repetition; this one is 17 nodes.
    Each projection's weight is the state dict's stored transposed (``layer.self_attn.q_proj.weight.T``, (in,
    out): ``lts.core.onnxgraph.TRANSPOSED``), so a MatMul reads it as it is: through a Transpose, as the exported
    layer reads it, ONNX Runtime would fold a second copy of every weight when loading (SmolLM2-135M's shape: a
    1,087 MiB generation peak instead of 776)."""
    b, d = arch.block(), arch.hidden_size
    h, kv, hd, ff = b.num_attention_heads, b.num_key_value_heads, b.head_dim, b.intermediate_size
    g = Graph()

    def linear(x: str, name: str, n_out: int, n_in: int) -> str:
        return g.op("MatMul", x, g.weight(f"layer.{name}.weight{TRANSPOSED}", (n_in, n_out)))

    def norm(x: str, name: str) -> str:
        gain = g.weight(f"layer.{name}.weight", (d,))
        return g.op("RMSNormalization", x, gain, axis=-1, epsilon=STANDARD["rms_norm_eps"])

    a = norm("hidden", "input_layernorm")
    q = g.op("RotaryEmbedding", linear(a, "self_attn.q_proj", h * hd, d), "cos", "sin", num_heads=h)
    k = g.op("RotaryEmbedding", linear(a, "self_attn.k_proj", kv * hd, d), "cos", "sin", num_heads=kv)
    v = linear(a, "self_attn.v_proj", kv * hd, d)
    y = g.op("Attention", q, k, v, "mask", "past_key", "past_value", q_num_heads=h, kv_num_heads=kv)
    g.nodes[-1].output.extend(["present_key", "present_value"])
    x = g.op("Add", "hidden", linear(y, "self_attn.o_proj", d, h * hd))
    m = norm(x, "post_attention_layernorm")
    gate = linear(m, "mlp.gate_proj", ff, d)
    act = g.op("Mul", g.op("Mul", gate, g.op("Sigmoid", gate)), linear(m, "mlp.up_proj", ff, d))
    g.nodes.append(helper.make_node("Add", [x, linear(act, "mlp.down_proj", d, ff)], ["hidden_out"]))
    names = ("hidden", "mask", "cos", "sin", "past_key", "past_value")
    return g.spec("llama_kv_layer", [helper.make_tensor_value_info(n, FLOAT, None) for n in names],
                  [helper.make_tensor_value_info(n, FLOAT, None) for n in ("hidden_out", "present_key",
                                                                           "present_value")], opset=LAYER_OPSET)


def _layer_weights(i: int) -> Any:
    return lambda name: f"model.layers.{i}." + name.removeprefix("layer.")


def _ends_weights(arch: LlamaArch) -> Any:
    def rename(name: str) -> str:
        if name.startswith("lm_head.weight"):  # stored transposed (".T") when untied
            return "model.embed_tokens.weight" if arch.tie_word_embeddings else name
        return "model." + name

    return rename


def forward_graph_spec(arch: LlamaArch, part: str = "full") -> GraphSpec:
    """"full": input_ids (1, S) -> logits (1, 1, V); "base": the same without layers; "block": one layer, hidden
    (1, S, d) and mask (1, 1, S, S) -> its last position (1, 1, d), weights named as layer 0."""
    d = arch.hidden_size
    if part == "block":
        return splice(f"lts_{arch.archid}_block", [Use(layer(arch), {"hidden": "hidden", "mask": "mask",
                                                                      "hidden_last": "hidden_last"},
                                                       _layer_weights(0))],
                      [helper.make_tensor_value_info("hidden", FLOAT, [1, "seq", d]),
                       helper.make_tensor_value_info("mask", FLOAT, [1, 1, "seq", "seq"])],
                      [helper.make_tensor_value_info("hidden_last", FLOAT, [1, 1, d])])
    if part not in ("full", "base"):
        raise ValueError(f"part must be full, base, block or kv, got {part!r}")
    ends = _ends_weights(arch)
    uses = [Use(prologue(arch), {"input_ids": "input_ids", "hidden": "x_0", "mask": "mask"}, ends)]
    n = arch.num_hidden_layers if part == "full" else 0
    one = layer(arch) if n else None  # every layer is a copy of the one piece: looked up once
    for i in range(n):
        uses.append(Use(one, {"hidden": f"x_{i}", "mask": "mask", "hidden_out": f"x_{i + 1}"},
                        _layer_weights(i)))
    uses.append(Use(head(arch, kv=False), {"hidden": f"x_{n}", "logits": "logits"}, ends))
    return splice(f"lts_{arch.archid}_{part}", uses, [helper.make_tensor_value_info("input_ids", INT64, [1, "seq"])],
                  [helper.make_tensor_value_info("logits", FLOAT, [1, 1, arch.vocab_size])])


KV_LAYERS = {"fused": fused_kv_layer, "exported": exported_kv_layer}


def kv_graph_spec(arch: LlamaArch, layer: str = "fused") -> GraphSpec:
    """The generation graph (``lts.generate.onnx_kv``'s interface): input_ids (B, S), attention_mask (B, P+S),
    past_key_i / past_value_i (B, KV heads, P, head_dim) -> logits (B, V) and the presents (B, KV heads, P+S,
    head_dim)."""
    n = arch.num_hidden_layers
    past, present = kv_names(n)
    ends = _ends_weights(arch)
    uses = [Use(kv_prologue(arch), {"input_ids": "input_ids", "attention_mask": "attention_mask", "hidden": "x_0",
                                    "mask": "mask", "positions": "positions", "cos": "cos", "sin": "sin"}, ends)]
    one = KV_LAYERS[layer](arch) if n else None  # every layer is a copy of the one piece: looked up once
    for i in range(n):
        uses.append(Use(one, {"hidden": f"x_{i}", "mask": "mask", "positions": "positions", "cos": "cos",
                              "sin": "sin", "past_key": past[2 * i], "past_value": past[2 * i + 1],
                              "hidden_out": f"x_{i + 1}", "present_key": present[2 * i],
                              "present_value": present[2 * i + 1]}, _layer_weights(i)))
    uses.append(Use(head(arch, kv=True), {"hidden": f"x_{n}", "logits": "logits"}, ends))
    kv, hd = arch.num_key_value_heads, arch.head_dim
    inputs = [helper.make_tensor_value_info("input_ids", INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", INT64, ["batch", "total"])]
    inputs += [helper.make_tensor_value_info(name, FLOAT, ["batch", kv, "past", hd]) for name in past]
    outputs = [helper.make_tensor_value_info("logits", FLOAT, ["batch", arch.vocab_size])]
    outputs += [helper.make_tensor_value_info(name, FLOAT, ["batch", kv, "total", hd]) for name in present]
    return splice(f"lts_{arch.archid}_kv", uses, inputs, outputs)


def graph_spec(arch: LlamaArch, part: str = "full") -> GraphSpec:
    """A graph of `arch` by part: "full", "base", "block" or "kv"."""
    return kv_graph_spec(arch) if part == "kv" else forward_graph_spec(arch, part)


__all__ = ["forward_graph_spec", "graph_spec", "kv_graph_spec"]
