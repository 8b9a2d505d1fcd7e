"""Llama's search space: depth, width, FFN ratio, KV heads and tied embeddings, as pymoo named variables.

Every gene is a pymoo ``Integer`` indexing a tuple of choices: ``num_hidden_layers``, ``hidden_size``,
``ffn_ratio`` (``intermediate_size`` = the ratio times hidden_size, rounded to a multiple of 64, as small Llamas
pick it: SmolLM2-135M's 1536 is 2.67 x 576), ``num_key_value_heads`` (the largest divisor of the head count that is
at most the choice: 1 is multi-query attention, the head count plain multi-head attention) and
``tie_word_embeddings``. The head count is hidden_size / head_dim (head_dim fixed, 64 by default).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
from pymoo.core.variable import Integer

from lts.core.errors import LTSError
from lts.families.llama import FAMILY, LlamaArch
from lts.families.spaces import as_yaml, choices, known_fields

GENES = ("num_hidden_layers", "hidden_size", "ffn_ratio", "num_key_value_heads", "tie_word_embeddings")
SPACE_FIELDS = (*GENES, "head_dim", "vocab_size", "max_position_embeddings", "rope_theta")
FFN_MULTIPLE = 64


@dataclass(frozen=True)
class LlamaSpace:
    """Discrete Llama space (genes index the choice tuples). The default covers today's small Llamas: 4-32 layers,
    hidden 256-1024, FFN 2-4x hidden, head_dim 64, KV heads from 1 to the head count, tied or not."""

    family: ClassVar[Any] = FAMILY

    num_hidden_layers: tuple[int, ...] = tuple(range(4, 33, 2))
    hidden_size: tuple[int, ...] = tuple(range(256, 1025, 64))
    ffn_ratio: tuple[float, ...] = (2.0, 2.5, 3.0, 3.5, 4.0)
    num_key_value_heads: tuple[int, ...] = (1, 2, 4, 8, 16)
    tie_word_embeddings: tuple[bool, ...] = (True, False)
    head_dim: int = 64
    vocab_size: int = 49152
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("num_hidden_layers", "hidden_size", "num_key_value_heads"):
            object.__setattr__(self, name, choices(getattr(self, name), name))
        object.__setattr__(self, "ffn_ratio", choices(self.ffn_ratio, "ffn_ratio", float))
        object.__setattr__(self, "tie_word_embeddings", choices(self.tie_word_embeddings, "tie_word_embeddings",
                                                                 bool))
        for name in ("head_dim", "vocab_size", "max_position_embeddings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise LTSError(f"space.{name} must be a positive integer, got {value!r}")
        theta = self.rope_theta
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or theta <= 0:
            raise LTSError(f"space.rope_theta must be a positive number, got {theta!r}")
        object.__setattr__(self, "rope_theta", float(theta))
        odd = [d for d in self.hidden_size if d % self.head_dim]
        if odd:
            raise LTSError(f"space.hidden_size: {', '.join(map(str, odd))} not a multiple of head_dim {self.head_dim}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LlamaSpace:
        return cls(**known_fields(data, SPACE_FIELDS))

    def to_dict(self) -> dict[str, Any]:
        return as_yaml(self)

    @property
    def max_positions(self) -> int:
        return self.max_position_embeddings

    @property
    def genes(self) -> tuple[str, ...]:
        return GENES

    def choices_of(self, gene: str) -> tuple:
        return getattr(self, gene)

    def variables(self) -> dict[str, Integer]:
        return {g: Integer(bounds=(0, len(self.choices_of(g)) - 1)) for g in GENES}

    @property
    def size(self) -> int:
        return int(np.prod([len(self.choices_of(g)) for g in GENES]))

    def as_genes(self, x: Mapping[str, Any] | Sequence[float]) -> dict[str, float]:
        if isinstance(x, Mapping):
            return {g: x[g] for g in GENES}
        x = list(x)
        if len(x) != len(GENES):
            raise ValueError(f"expected {len(GENES)} genes ({', '.join(GENES)}), got {len(x)}")
        return dict(zip(GENES, x))

    def repair(self, x: Mapping[str, Any] | Sequence[float]) -> dict[str, int]:
        """Round and clip genes (never raise); a KV-head choice that does not divide the head count reads as the
        largest one that does below it, so its gene is set to that choice when the space lists it."""
        genes = {g: int(np.clip(np.rint(float(v)), 0, len(self.choices_of(g)) - 1))
                 for g, v in self.as_genes(x).items()}
        kv = self._kv_heads(self.hidden_size[genes["hidden_size"]],
                            self.num_key_value_heads[genes["num_key_value_heads"]])
        if kv in self.num_key_value_heads:
            genes["num_key_value_heads"] = self.num_key_value_heads.index(kv)
        return genes

    def _kv_heads(self, hidden: int, choice: int) -> int:
        heads = hidden // self.head_dim
        return max(k for k in range(1, min(choice, heads) + 1) if heads % k == 0)

    def intermediate(self, hidden: int, ratio: float) -> int:
        return max(FFN_MULTIPLE, int(ratio * hidden / FFN_MULTIPLE + 0.5) * FFN_MULTIPLE)  # half up

    def decode(self, x: Mapping[str, Any] | Sequence[float]) -> LlamaArch:
        genes = self.repair(x)
        d = self.hidden_size[genes["hidden_size"]]
        return LlamaArch(hidden_size=d, num_hidden_layers=self.num_hidden_layers[genes["num_hidden_layers"]],
                         intermediate_size=self.intermediate(d, self.ffn_ratio[genes["ffn_ratio"]]),
                         num_attention_heads=d // self.head_dim,
                         num_key_value_heads=self._kv_heads(d, self.num_key_value_heads[genes["num_key_value_heads"]]),
                         head_dim=self.head_dim,
                         tie_word_embeddings=self.tie_word_embeddings[genes["tie_word_embeddings"]],
                         vocab_size=self.vocab_size, rope_theta=self.rope_theta,
                         max_position_embeddings=self.max_position_embeddings)

    def encode(self, arch: LlamaArch) -> dict[str, int]:
        """Genes that decode to `arch`; LTSError when it is outside the space."""
        try:
            d = arch.hidden_size
            genes = {"num_hidden_layers": self.num_hidden_layers.index(arch.num_hidden_layers),
                     "hidden_size": self.hidden_size.index(d),
                     "ffn_ratio": next(i for i, r in enumerate(self.ffn_ratio)
                                       if self.intermediate(d, r) == arch.intermediate_size),
                     "num_key_value_heads": next(i for i, k in enumerate(self.num_key_value_heads)
                                                 if self._kv_heads(d, k) == arch.num_key_value_heads),
                     "tie_word_embeddings": self.tie_word_embeddings.index(arch.tie_word_embeddings)}
        except (ValueError, StopIteration):
            raise LTSError(f"{arch} is outside this search space") from None
        if self.decode(genes) != arch:
            raise LTSError(f"{arch} is outside this search space")
        return genes

    def sample(self, rng: np.random.Generator) -> LlamaArch:
        return self.decode([rng.integers(0, len(self.choices_of(g))) for g in GENES])

    def configs(self) -> Iterator[LlamaArch]:
        for genes in itertools.product(*(range(len(self.choices_of(g))) for g in GENES)):
            yield self.decode(genes)


__all__ = ["GENES", "LlamaSpace", "SPACE_FIELDS"]
