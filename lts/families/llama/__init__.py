"""Llama-style decoders: grouped-query attention, rotary positions, SwiGLU, RMSNorm — SmolLM2, MobileLLM,
TinyLlama and the Llama models themselves, in transformers' own field names.

An :class:`LlamaArch` is a stock ``LlamaConfig``'s shape: ``hidden_size``, ``num_hidden_layers``,
``intermediate_size``, ``num_attention_heads``, ``num_key_value_heads`` (the heads that the cache holds; each is
shared by ``num_attention_heads / num_key_value_heads`` query heads), ``head_dim``, ``tie_word_embeddings``,
``vocab_size``, ``rope_theta`` and ``max_position_embeddings``. Everything else is transformers' default (no
biases, SiLU, RMSNorm eps 1e-6, no RoPE scaling), so a front member is a ``config.json`` that plain transformers
(and every Llama runtime) loads without ``import lts``.

Its graphs are exported from transformers' own Llama modules (``graph.py`` through ``lts.families.exported``):
no hand-written graph. Its space is ``space.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from lts.core.errors import LTSError
from lts.families import HF_BOOKKEEPING, archid_of

ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "num_key_value_heads",
               "head_dim", "tie_word_embeddings", "vocab_size", "rope_theta", "max_position_embeddings")
INT_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "num_key_value_heads",
              "head_dim", "vocab_size", "max_position_embeddings")
# What the family's graphs compute, fixed: a config.json that sets another value is not one of its architectures.
STANDARD = {"hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "rms_norm_eps": 1e-6,
            "rope_scaling": None, "pretraining_tp": 1}
COLUMNS = {"num_hidden_layers": "layers", "hidden_size": "hidden", "intermediate_size": "ffn",
           "num_attention_heads": "heads", "num_key_value_heads": "kv_heads", "tie_word_embeddings": "tied"}


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise LTSError(f"{name} must be an integer, got {value!r}")
    if value <= 0:
        raise LTSError(f"{name} must be positive, got {value}")
    return int(value)


@dataclass(frozen=True)
class Block:
    """One decoder layer's shape: what its cost depends on."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int


@dataclass(frozen=True)
class LlamaArch:
    """A Llama architecture (``lts.families.Arch``); ``head_dim`` defaults to hidden_size / heads as in
    ``LlamaConfig``."""

    family: ClassVar[Any]  # LlamaFamily, set below

    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    tie_word_embeddings: bool = True
    vocab_size: int = 49152
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
        if self.head_dim is None and isinstance(self.hidden_size, int) and isinstance(self.num_attention_heads, int) \
                and self.num_attention_heads > 0:
            if self.hidden_size % self.num_attention_heads:
                raise LTSError(f"head_dim is not given and hidden_size={self.hidden_size} is not divisible by "
                               f"num_attention_heads={self.num_attention_heads}")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        for name in INT_FIELDS:
            object.__setattr__(self, name, _integer(name, getattr(self, name)))
        if not isinstance(self.tie_word_embeddings, (bool, np.bool_)):
            raise LTSError(f"tie_word_embeddings must be true or false, got {self.tie_word_embeddings!r}")
        object.__setattr__(self, "tie_word_embeddings", bool(self.tie_word_embeddings))
        theta = self.rope_theta
        if isinstance(theta, bool) or not isinstance(theta, (int, float, np.number)) or not theta > 0:
            raise LTSError(f"rope_theta must be a positive number, got {theta!r}")
        object.__setattr__(self, "rope_theta", float(theta))
        if self.num_attention_heads % self.num_key_value_heads:
            raise LTSError(f"num_attention_heads={self.num_attention_heads} is not divisible by "
                           f"num_key_value_heads={self.num_key_value_heads} (each KV head serves a whole group)")

    # ---- what the rest of LTS reads

    @property
    def max_positions(self) -> int:
        """The longest sequence it takes (``Arch.max_positions``)."""
        return self.max_position_embeddings

    @property
    def archid(self) -> str:
        return archid_of(self)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ARCH_FIELDS}

    def columns(self) -> dict[str, str]:
        return {label: (("yes" if v else "no") if isinstance(v := getattr(self, name), bool) else str(v))
                for name, label in COLUMNS.items()}

    def block(self) -> Block:
        return Block(self.hidden_size, self.intermediate_size, self.num_attention_heads, self.num_key_value_heads,
                     self.head_dim)

    # ---- parameters, in closed form (exact against LlamaForCausalLM: tested)

    def non_embedding_params(self) -> int:
        """Every parameter but ``embed_tokens`` and ``lm_head``: the layers and the final norm."""
        return self.num_hidden_layers * block_params(self.block()) + self.hidden_size

    def embedding_params(self) -> int:
        """``embed_tokens``, and ``lm_head`` when it is not tied to it."""
        return (1 if self.tie_word_embeddings else 2) * self.vocab_size * self.hidden_size

    def total_params(self) -> int:
        return self.non_embedding_params() + self.embedding_params()

    # ---- costs and graphs

    def block_parts(self) -> dict[str, tuple[Block, int]]:
        return {"block": (self.block(), self.num_hidden_layers)} if self.num_hidden_layers else {}

    def part_key(self, part: str) -> tuple[Any, ...]:
        """The embeddings and head ("base") on (hidden, vocab, tied), a layer on its shape."""
        if part == "base":
            return ("llama", self.hidden_size, self.vocab_size, self.tie_word_embeddings)
        b = self.block_parts()[part][0]
        return ("llama", b.hidden_size, b.intermediate_size, b.num_attention_heads, b.num_key_value_heads,
                b.head_dim, self.rope_theta)

    def graph_spec(self, part: str = "full") -> Any:
        from lts.families.llama.graph import graph_spec

        return graph_spec(self, part)

    def kv_layout(self) -> list[tuple[int, int]]:
        """Grouped-query attention: the cache holds the KV heads only."""
        return [(self.num_key_value_heads, self.head_dim)] * self.num_hidden_layers

    def to_hf_config(self, **overrides: Any) -> Any:
        """A stock ``LlamaConfig`` of exactly this shape (bos/eos inside the vocabulary)."""
        from transformers import LlamaConfig

        eos = min(2, self.vocab_size - 1)
        kwargs: dict[str, Any] = dict(self.to_dict(), bos_token_id=min(1, eos), eos_token_id=eos)
        kwargs.update({k: v for k, v in STANDARD.items() if k != "rope_scaling"})
        kwargs.update(overrides)
        return LlamaConfig(**kwargs)

    def to_model(self, **overrides: Any) -> Any:
        from transformers import LlamaForCausalLM

        return LlamaForCausalLM(self.to_hf_config(**overrides))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> LlamaArch:
        """The architecture of a ``LlamaConfig`` dict (a config.json, ``to_dict()``); other keys are ignored, except
        those that change what the graphs compute (:data:`STANDARD`): one line naming them."""
        if not isinstance(data, Mapping):
            raise LTSError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("model_type", "llama") not in LlamaFamily.model_types:
            raise LTSError(f"{source}: model_type is {data.get('model_type')!r}, not Llama's ('llama')")
        values = {}
        for name in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads"):
            if name not in data:
                raise LTSError(f"{source}: missing field {name!r}")
            values[name] = data[name]
        for name in ARCH_FIELDS:
            if name in data and name not in values and (data[name] is not None or name not in
                                                        ("head_dim", "num_key_value_heads")):
                values[name] = data[name]
        rope = data.get("rope_parameters")  # transformers 5 writes rope_theta inside it
        if isinstance(rope, Mapping) and "rope_theta" in rope and "rope_theta" not in values:
            values["rope_theta"] = rope["rope_theta"]
        odd = [f"{k}={data[k]!r}" for k, v in STANDARD.items() if k in data and data[k] != v
               and not (k == "rope_scaling" and _plain_rope(data[k]))]
        if isinstance(rope, Mapping) and rope.get("rope_type", "default") != "default":
            odd.append(f"rope_type={rope['rope_type']!r}")
        if odd:
            raise LTSError(f"{source}: LTS's Llama family computes the standard layer only; this config sets "
                           f"{', '.join(odd)}")
        try:
            return cls(**values)
        except LTSError as exc:
            raise LTSError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise LTSError(f"{source}: {exc}") from None


def _plain_rope(value: Any) -> bool:
    """A rope_scaling that changes nothing (transformers 5 writes ``{"rope_type": "default", ...}``)."""
    return value is None or (isinstance(value, Mapping) and value.get("rope_type", "default") == "default")


def block_params(b: Block) -> int:
    """One decoder layer: q and o projections (hidden x heads*head_dim each), k and v (hidden x kv_heads*head_dim
    each), gate, up and down (hidden x intermediate each), two RMSNorm gains; no biases."""
    d, q, kv = b.hidden_size, b.num_attention_heads * b.head_dim, b.num_key_value_heads * b.head_dim
    return 2 * d * q + 2 * d * kv + 3 * d * b.intermediate_size + 2 * d


class LlamaFamily:
    """Llama (``lts.families.Family``): reads ``llama`` configs; writes stock ``LlamaConfig`` ones."""

    name = "llama"
    title = "Llama"
    model_types = ("llama",)
    dropout_fields = ("attention_dropout",)

    def arch(self, data: Mapping[str, Any], *, source: str) -> LlamaArch:
        return LlamaArch.from_dict(data, source=source)

    def space(self, data: Mapping[str, Any]) -> Any:
        from lts.families.llama.space import LlamaSpace

        return LlamaSpace.from_dict(data)

    def hf_config(self, data: Mapping[str, Any], *, source: str) -> Any | None:
        return None  # transformers reads every Llama config.json itself

    def from_hf_model(self, model: Any) -> LlamaArch | None:
        """The architecture of a ``LlamaForCausalLM`` whose layers are the standard ones, in float32; None for any
        other (the torch exporter serves it whole)."""
        if type(model).__name__ != "LlamaForCausalLM" or getattr(model.config, "model_type", None) != "llama":
            return None
        import torch

        if any(p.dtype != torch.float32 for p in model.parameters()):
            return None
        data = {k: v for k, v in model.config.to_dict().items() if k not in HF_BOOKKEEPING}
        try:
            arch = LlamaArch.from_dict(data, source="model")
        except LTSError:
            return None
        return arch if getattr(model.config, "rms_norm_eps", None) == STANDARD["rms_norm_eps"] else None

    def register_with_transformers(self) -> None:
        pass  # LlamaConfig is transformers' own


FAMILY = LlamaFamily()
LlamaArch.family = FAMILY

__all__ = ["ARCH_FIELDS", "Block", "FAMILY", "LlamaArch", "LlamaFamily", "STANDARD", "block_params"]
