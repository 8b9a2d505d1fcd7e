"""Llama's ONNX graphs, exported from transformers' own Llama modules (``lts.families.exported``): none hand-written.

Six pieces, each exported once per shape and spliced (a 30-layer model is its prologue, 30 copies of one layer
and its head):

- forward (batch 1, no cache): ``Prologue`` input_ids (1, S) -> embeddings and the additive causal mask
  (1, 1, S, S); ``Layer`` (hidden, mask) -> hidden (a ``LlamaDecoderLayer`` with its rotary embedding computed
  for positions 0..S-1), also giving its last position (the block part the cost table times); ``Head`` the final
  RMSNorm and the LM head on the last position -> logits (1, 1, V).
- generation (a KV cache, batches left-padded): ``KVPrologue`` (input_ids (B, S), attention_mask (B, P+S)) ->
  embeddings, the additive mask (B, 1, S, P+S: causal over past and new, padding masked) and each new token's
  position (its row's tokens before it, as ``generate`` counts them); ``KVLayer`` (hidden, mask, positions,
  past_key, past_value) -> (hidden, present_key, present_value), the cache holding the KV heads only; ``KVHead``
  -> logits (B, V) of the last position.

Attention is transformers' eager implementation (the KV heads repeated to the query heads, matmul, softmax in
float32); masked keys get float32's minimum, not -inf, so a padding query gets finite, ignored values. The LM
head reads the embedding when tied (one weight in the graph, as in the model) through a Gemm that reads it as
stored. Weights are named as in ``LlamaForCausalLM``'s state dict. ``tests/families/test_llama.py`` checks the
logits of every graph against transformers, prefill, decoding and left padding included.
"""

from __future__ import annotations

from typing import Any

from onnx import TensorProto, helper

from lts.core.onnxgraph import GraphSpec, kv_names
from lts.families.exported import Piece, Use, build_module, piece_spec, splice
from lts.families.llama import Block, LlamaArch

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def _layer_config(block: Block, rope_theta: float, vocab_size: int = 8) -> Any:
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=block.hidden_size, intermediate_size=block.intermediate_size,
                         num_attention_heads=block.num_attention_heads,
                         num_key_value_heads=block.num_key_value_heads, head_dim=block.head_dim,
                         num_hidden_layers=1, vocab_size=vocab_size, rope_theta=rope_theta)
    config._attn_implementation = "eager"
    return config


def _modules() -> dict[str, type]:
    """The pieces' torch modules (defined on first use: torch and transformers are imported only to export)."""
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
            self.norm = LlamaRMSNorm(d, eps=1e-6)
            self.lm_head = torch.nn.Linear(d, vocab, bias=False)

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            last = self.norm(hidden[:, -1, :])  # (B, d): a 2-D linear is a Gemm reading the weight as stored
            return torch.nn.functional.linear(last, self.lm_head.weight)

    class ForwardHead(Head):
        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            return super().forward(hidden)[:, None, :]  # (1, 1, V)

    class KVPrologue(torch.nn.Module):
        def __init__(self, vocab: int, d: int) -> None:
            super().__init__()
            self.embed_tokens = torch.nn.Embedding(vocab, d)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            seq, total = input_ids.shape[1], attention_mask.shape[1]
            counted = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
            positions = counted[:, total - seq:]
            query = torch.arange(total - seq, total)[:, None]  # new token i sits at column P+i
            allowed = (torch.arange(total)[None, :] <= query)[None, None] & (attention_mask[:, None, None, :] == 1)
            return self.embed_tokens(input_ids), torch.where(allowed, 0.0, neg), positions

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
           dynamic: dict[str, dict[int, str]]) -> GraphSpec:
    return piece_spec(Piece({"family": "llama", "piece": kind, **key}, lambda: build_module(make), args, inputs,
                            outputs, dynamic))


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

    d, v = arch.hidden_size, arch.vocab_size
    return _piece("kv_head" if kv else "head", _ends_key(arch),
                  lambda: _modules()["Head" if kv else "ForwardHead"](v, d),
                  lambda: (torch.zeros((2 if kv else 1, 7, d)),), ("hidden",), ("logits",),
                  {"hidden": {0: "batch", 1: "seq"} if kv else {1: "seq"}})


def kv_prologue(arch: LlamaArch) -> GraphSpec:
    import torch

    d, v = arch.hidden_size, arch.vocab_size
    return _piece("kv_prologue", _ends_key(arch), lambda: _modules()["KVPrologue"](v, d),
                  lambda: (torch.zeros((2, 3), dtype=torch.long), torch.ones((2, 8), dtype=torch.long)),
                  ("input_ids", "attention_mask"), ("hidden", "mask", "positions"),
                  {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"}})


def kv_layer(arch: LlamaArch) -> GraphSpec:
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


def _layer_weights(i: int) -> Any:
    return lambda name: f"model.layers.{i}." + name.removeprefix("layer.")


def _ends_weights(arch: LlamaArch) -> Any:
    def rename(name: str) -> str:
        if name == "lm_head.weight":
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


def kv_graph_spec(arch: LlamaArch) -> GraphSpec:
    """The generation graph (``lts.generate.onnx_kv``'s interface): input_ids (B, S), attention_mask (B, P+S),
    past_key_i / past_value_i (B, KV heads, P, head_dim) -> logits (B, V) and the presents (B, KV heads, P+S,
    head_dim)."""
    n = arch.num_hidden_layers
    past, present = kv_names(n)
    ends = _ends_weights(arch)
    uses = [Use(kv_prologue(arch), {"input_ids": "input_ids", "attention_mask": "attention_mask", "hidden": "x_0",
                                    "mask": "mask", "positions": "positions"}, ends)]
    one = kv_layer(arch) if n else None  # every layer is a copy of the one piece: looked up once
    for i in range(n):
        uses.append(Use(one, {"hidden": f"x_{i}", "mask": "mask", "positions": "positions",
                                         "past_key": past[2 * i], "past_value": past[2 * i + 1],
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
