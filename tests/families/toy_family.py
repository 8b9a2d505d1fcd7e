"""A second model family, installed beside LTS as a plugin would be (entry point ``lts.families``).

"toy" is a narrow GPT-2: two genes (``n_layer`` and ``n_embd``), every block with ``n_inner = 2 n_embd`` and two
heads. Its graphs, parameter count and transformers model are GPT-2's of that shape, but it has its own fields,
ids (``toy_...``), columns and space, so a search, a stored evaluation, the gallery or a measuring child that
read an architecture other than through ``lts.families`` would fail on it. The tests copy this file into a
folder on PYTHONPATH with a dist-info that declares the entry point.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
from pymoo.core.variable import Integer

from lts.core.errors import LTSError
from lts.families import archid_of
from lts.families.gpt2 import ArchConfig

FIELDS = ("n_layer", "n_embd", "vocab_size", "n_positions")


@dataclass(frozen=True)
class ToyArch:
    family: ClassVar[Any]

    n_layer: int
    n_embd: int
    vocab_size: int = 512
    n_positions: int = 64

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or (name == "n_embd" and value % 2):
                raise LTSError(f"toy: {name} must be a positive (for n_embd: even) integer, got {value!r}")

    @property
    def max_positions(self) -> int:
        return self.n_positions

    @property
    def gpt2(self) -> ArchConfig:
        return ArchConfig(self.n_layer, self.n_embd, 2 * self.n_embd, 2, self.vocab_size, self.n_positions)

    @property
    def archid(self) -> str:
        return archid_of(self)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def columns(self) -> dict[str, str]:
        return {"depth": str(self.n_layer), "width": str(self.n_embd)}

    def non_embedding_params(self) -> int:
        return self.gpt2.non_embedding_params()

    def total_params(self) -> int:
        return self.gpt2.total_params()

    def block_parts(self) -> dict[str, tuple[Any, int]]:
        return self.gpt2.block_parts()

    def part_key(self, part: str) -> tuple[Any, ...]:
        return self.gpt2.part_key(part)

    def graph_spec(self, part: str = "full") -> Any:
        return self.gpt2.graph_spec(part)

    def kv_layout(self) -> list[tuple[int, int]]:
        return self.gpt2.kv_layout()

    def to_hf_config(self, **overrides: Any) -> Any:
        return self.gpt2.to_hf_config(**{"family": "toy", **overrides})

    def to_model(self, **overrides: Any) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_config(self.to_hf_config(**overrides))


@dataclass(frozen=True)
class ToySpace:
    family: ClassVar[Any]

    n_layer: tuple[int, ...] = (1, 2, 3)
    n_embd: tuple[int, ...] = (32, 48, 64)
    vocab_size: int = 512
    n_positions: int = 64

    @property
    def max_positions(self) -> int:
        return self.n_positions

    genes: ClassVar[tuple[str, ...]] = ("n_layer", "n_embd")

    def __post_init__(self) -> None:
        for name in self.genes:
            object.__setattr__(self, name, tuple(sorted(int(v) for v in getattr(self, name))))

    @property
    def size(self) -> int:
        return len(self.n_layer) * len(self.n_embd)

    def variables(self) -> dict[str, Integer]:
        return {g: Integer(bounds=(0, len(getattr(self, g)) - 1)) for g in self.genes}

    def repair(self, x: Mapping[str, Any] | Sequence[float]) -> dict[str, int]:
        values = dict(x) if isinstance(x, Mapping) else dict(zip(self.genes, x))
        return {g: int(np.clip(np.rint(float(values[g])), 0, len(getattr(self, g)) - 1)) for g in self.genes}

    def decode(self, x: Mapping[str, Any] | Sequence[float]) -> ToyArch:
        genes = self.repair(x)
        return ToyArch(self.n_layer[genes["n_layer"]], self.n_embd[genes["n_embd"]], self.vocab_size,
                       self.n_positions)

    def encode(self, arch: ToyArch) -> dict[str, int]:
        return {"n_layer": self.n_layer.index(arch.n_layer), "n_embd": self.n_embd.index(arch.n_embd)}

    def sample(self, rng: np.random.Generator) -> ToyArch:
        return self.decode([rng.integers(len(self.n_layer)), rng.integers(len(self.n_embd))])

    def configs(self) -> Iterator[ToyArch]:
        for genes in itertools.product(range(len(self.n_layer)), range(len(self.n_embd))):
            yield self.decode(genes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


class ToyFamily:
    name = "toy"
    title = "toy GPT-2"
    model_types = ()  # it writes GPT-2 configs marked ``family: toy``
    dropout_fields = ("resid_pdrop", "embd_pdrop", "attn_pdrop")

    def arch(self, data: Mapping[str, Any], *, source: str) -> ToyArch:
        try:
            return ToyArch(**{k: data[k] for k in FIELDS if k in data})
        except (LTSError, TypeError) as exc:
            raise LTSError(f"{source}: {exc}") from None

    def space(self, data: Mapping[str, Any]) -> ToySpace:
        return ToySpace(**data)

    def hf_config(self, data: Mapping[str, Any], *, source: str) -> Any | None:
        return None

    def from_hf_model(self, model: Any) -> ToyArch | None:
        return None

    def register_with_transformers(self) -> None:
        pass


FAMILY = ToyFamily()
ToyArch.family = ToySpace.family = FAMILY
