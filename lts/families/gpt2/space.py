"""GPT-2's search space: which ArchConfigs a search may visit, declared as pymoo named variables.

Every gene is a pymoo ``Integer`` variable, named, whose value indexes a tuple of choices (so SBX and
polynomial mutation act on ordered values): ``n_layer``, ``n_embd``, and either ``n_inner`` and ``n_head``
(one shape for every layer: Archai's space) or, with ``per_layer``, ``n_inner_0 .. n_inner_{L-1}`` and
``n_head_0 .. n_head_{L-1}`` for the deepest choice L (the LTS paper's space; a layer beyond the
architecture's ``n_layer`` is an inactive gene). A candidate is a dict of gene values, as pymoo's
mixed-variable NSGA-II hands it out; :meth:`SearchSpace.decode` turns it into an architecture.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
from pymoo.core.variable import Integer

from lts.core.errors import LTSError
from lts.families.gpt2 import ARCH_FIELDS, FAMILY, GENES, ArchConfig
from lts.families.spaces import as_yaml, choices, known_fields

SPACE_FIELDS = (*ARCH_FIELDS, "per_layer")


@dataclass(frozen=True)
class SearchSpace:
    """Discrete GPT-2 space; genes are indices into the choice tuples (pymoo named ``Integer`` variables).

    Default = Archai's LTS space: n_layer 1-10, n_embd and n_inner in range(128, 1024, 64),
    n_head in {2, 4, 8}, vocab 50257, 1024 positions, one block shape for every layer.
    ``per_layer=True``: each layer picks its own n_inner and n_head from the same choices.
    """

    family: ClassVar[Any] = FAMILY

    n_layer: tuple[int, ...] = tuple(range(1, 11))
    n_embd: tuple[int, ...] = tuple(range(128, 1024, 64))
    n_inner: tuple[int, ...] = tuple(range(128, 1024, 64))
    n_head: tuple[int, ...] = (2, 4, 8)
    vocab_size: int = 50257
    n_positions: int = 1024
    per_layer: bool = False

    def __post_init__(self) -> None:
        for name in GENES:
            object.__setattr__(self, name, choices(getattr(self, name), name))
        for name in ("vocab_size", "n_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise LTSError(f"space.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.per_layer, bool):
            raise LTSError(f"space.per_layer must be true or false, got {self.per_layer!r}")
        orphans = [d for d in self.n_embd if not any(d % h == 0 for h in self.n_head)]
        if len(orphans) == len(self.n_embd):
            raise LTSError("impossible space: no n_embd choice is divisible by any n_head choice")

    @property
    def max_positions(self) -> int:
        return self.n_positions

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SearchSpace:
        return cls(**known_fields(data, SPACE_FIELDS))

    def to_dict(self) -> dict[str, Any]:
        """The space as its YAML reads (:func:`lts.families.spaces.as_yaml`)."""
        out = as_yaml(self)
        if not self.per_layer:  # a homogeneous space's job.json has no per_layer key: any LTS resumes its runs
            del out["per_layer"]
        return out

    # ------------------------------------------------------------------ genes

    @property
    def genes(self) -> tuple[str, ...]:
        """Gene names, in order: n_layer, n_embd, then n_inner and n_head (per layer: _0, _1, ...)."""
        if not self.per_layer:
            return GENES
        deepest = range(max(self.n_layer))
        return ("n_layer", "n_embd", *(f"n_inner_{i}" for i in deepest), *(f"n_head_{i}" for i in deepest))

    def choices_of(self, gene: str) -> tuple[int, ...]:
        """The values a gene indexes (``n_inner_3`` -> the n_inner choices)."""
        return getattr(self, gene.rsplit("_", 1)[0] if gene[-1].isdigit() else gene)

    def variables(self) -> dict[str, Integer]:
        """pymoo's named variables of the problem: each gene an Integer index into its choices."""
        return {g: Integer(bounds=(0, len(self.choices_of(g)) - 1)) for g in self.genes}

    @property
    def xl(self) -> np.ndarray:
        return np.zeros(len(self.genes), dtype=int)

    @property
    def xu(self) -> np.ndarray:
        return np.array([len(self.choices_of(g)) - 1 for g in self.genes], dtype=int)

    @property
    def size(self) -> int:
        """How many gene combinations decode to distinct architectures (divisibility not counted)."""
        if not self.per_layer:
            return int(np.prod(self.xu + 1))
        per = len(self.n_inner) * len(self.n_head)
        return len(self.n_embd) * sum(per ** n for n in self.n_layer)

    def as_genes(self, x: Mapping[str, Any] | Sequence[float]) -> dict[str, float]:
        """A candidate as a dict of genes (a sequence is read in :attr:`genes` order)."""
        if isinstance(x, Mapping):
            return {g: x[g] for g in self.genes}
        x = list(x)
        if len(x) != len(self.genes):
            raise ValueError(f"expected {len(self.genes)} genes ({', '.join(self.genes)}), got {len(x)}")
        return dict(zip(self.genes, x))

    def repair(self, x: Mapping[str, Any] | Sequence[float]) -> dict[str, int]:
        """Round and clip genes, then make every head count divide n_embd (never raise)."""
        genes = {g: int(np.clip(np.rint(float(v)), 0, len(self.choices_of(g)) - 1))
                 for g, v in self.as_genes(x).items()}
        heads = [g for g in self.genes if g.startswith("n_head")]
        d = self.n_embd[genes["n_embd"]]
        if not any(d % h == 0 for h in self.n_head):  # no head count divides it: the nearest n_embd some does
            ok = [i for i, e in enumerate(self.n_embd) if any(e % h == 0 for h in self.n_head)]
            genes["n_embd"] = min(ok, key=lambda i: (abs(i - genes["n_embd"]), i))
            d = self.n_embd[genes["n_embd"]]
        for g in heads:  # the nearest head count that divides n_embd
            h = self.n_head[genes[g]]
            if d % h:
                fits = [i for i, c in enumerate(self.n_head) if d % c == 0]
                genes[g] = min(fits, key=lambda i: (abs(self.n_head[i] - h), i))
        return genes

    def decode(self, x: Mapping[str, Any] | Sequence[float]) -> ArchConfig:
        genes = self.repair(x)
        n_layer = self.n_layer[genes["n_layer"]]
        if self.per_layer:
            n_inner: Any = [self.n_inner[genes[f"n_inner_{i}"]] for i in range(n_layer)]
            n_head: Any = [self.n_head[genes[f"n_head_{i}"]] for i in range(n_layer)]
        else:
            n_inner, n_head = self.n_inner[genes["n_inner"]], self.n_head[genes["n_head"]]
        return ArchConfig(n_layer=n_layer, n_embd=self.n_embd[genes["n_embd"]], n_inner=n_inner, n_head=n_head,
                          vocab_size=self.vocab_size, n_positions=self.n_positions)

    def encode(self, config: ArchConfig) -> dict[str, int]:
        """Genes that decode to `config` (a per-layer space's inactive layers repeat the last active one)."""
        try:
            genes = {"n_layer": self.n_layer.index(config.n_layer), "n_embd": self.n_embd.index(config.n_embd)}
            inner, heads = config.layer_values("n_inner"), config.layer_values("n_head")
            if self.per_layer:
                for i in range(max(self.n_layer)):
                    genes[f"n_inner_{i}"] = self.n_inner.index(inner[min(i, len(inner) - 1)])
                    genes[f"n_head_{i}"] = self.n_head.index(heads[min(i, len(heads) - 1)])
            elif config.per_layer:
                raise ValueError
            else:
                genes.update(n_inner=self.n_inner.index(config.n_inner), n_head=self.n_head.index(config.n_head))
        except ValueError:
            raise LTSError(f"{config} is outside this search space") from None
        return genes

    def sample(self, rng: np.random.Generator) -> ArchConfig:
        return self.decode(rng.integers(self.xl, self.xu + 1))

    def configs(self) -> Iterator[ArchConfig]:
        """Every architecture of the space (gene combinations that repair alike yield it again); a per-layer
        space's inactive layers are left at their first choice, so each architecture comes once per repair."""
        if not self.per_layer:
            for genes in itertools.product(*(range(int(u) + 1) for u in self.xu)):
                yield self.decode(genes)
            return
        shapes = list(itertools.product(range(len(self.n_inner)), range(len(self.n_head))))
        deepest = max(self.n_layer)
        for li, n_layer in enumerate(self.n_layer):
            for ei in range(len(self.n_embd)):
                for layers in itertools.product(shapes, repeat=n_layer):
                    genes = {"n_layer": li, "n_embd": ei}
                    for i in range(deepest):
                        f, h = layers[i] if i < n_layer else (0, 0)
                        genes[f"n_inner_{i}"], genes[f"n_head_{i}"] = f, h
                    yield self.decode(genes)
