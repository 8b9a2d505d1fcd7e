"""The search space: which ArchConfigs a search may visit, encoded as integer genes for pymoo."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from lts.core.arch import ARCH_FIELDS, GENES, ArchConfig
from lts.core.errors import LTSError


def _choices(values: Any, name: str) -> tuple[int, ...]:
    if isinstance(values, Mapping):  # {start, stop, step} like range(), stop exclusive
        try:
            values = range(int(values["start"]), int(values["stop"]), int(values.get("step", 1)))
        except (KeyError, TypeError, ValueError):
            raise LTSError(f"space.{name}: a range needs integer start, stop (exclusive) and optional step") from None
    try:
        out = tuple(sorted({int(v) for v in values}))
    except (TypeError, ValueError):
        raise LTSError(f"space.{name}: expected a list of integers or a range, got {values!r}") from None
    if not out or out[0] <= 0:
        raise LTSError(f"space.{name}: needs at least one positive value, got {list(out)}")
    return out


@dataclass(frozen=True)
class SearchSpace:
    """Discrete GPT-2 space; genes are indices into the choice tuples (pymoo integer variables).

    Default = Archai's LTS space: n_layer 1-10, n_embd and n_inner in range(128, 1024, 64),
    n_head in {2, 4, 8}, vocab 50257, 1024 positions.
    """

    n_layer: tuple[int, ...] = tuple(range(1, 11))
    n_embd: tuple[int, ...] = tuple(range(128, 1024, 64))
    n_inner: tuple[int, ...] = tuple(range(128, 1024, 64))
    n_head: tuple[int, ...] = (2, 4, 8)
    vocab_size: int = 50257
    n_positions: int = 1024

    def __post_init__(self) -> None:
        for name in GENES:
            object.__setattr__(self, name, _choices(getattr(self, name), name))
        for name in ("vocab_size", "n_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise LTSError(f"space.{name} must be a positive integer, got {value!r}")
        orphans = [d for d in self.n_embd if not any(d % h == 0 for h in self.n_head)]
        if len(orphans) == len(self.n_embd):
            raise LTSError("impossible space: no n_embd choice is divisible by any n_head choice")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SearchSpace:
        data = dict(data or {})
        unknown = sorted(set(data) - set(ARCH_FIELDS))
        if unknown:
            raise LTSError(f"unknown space field(s): {', '.join(unknown)} (known: {', '.join(ARCH_FIELDS)})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The space as its YAML reads: an evenly spaced choice of three or more as {start, stop, step}."""
        def plain(v: Any) -> Any:
            if not isinstance(v, tuple):
                return v
            steps = {b - a for a, b in zip(v, v[1:])}
            if len(v) >= 3 and len(steps) == 1:
                step = steps.pop()
                return {"start": v[0], "stop": v[-1] + step, **({"step": step} if step != 1 else {})}
            return list(v)

        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}

    @property
    def xl(self) -> np.ndarray:
        return np.zeros(len(GENES), dtype=int)

    @property
    def xu(self) -> np.ndarray:
        return np.array([len(getattr(self, g)) - 1 for g in GENES], dtype=int)

    @property
    def size(self) -> int:
        return int(np.prod(self.xu + 1))

    def repair(self, x: Sequence[float]) -> np.ndarray:
        """Round and clip genes, then make n_embd divisible by n_head (never raise)."""
        x = np.clip(np.rint(np.asarray(x, dtype=float)), self.xl, self.xu).astype(int)
        d = self.n_embd[x[1]]
        if d % self.n_head[x[3]]:
            heads = [i for i, h in enumerate(self.n_head) if d % h == 0]
            if heads:  # nearest head count that divides n_embd
                x[3] = min(heads, key=lambda i: (abs(self.n_head[i] - self.n_head[x[3]]), i))
            else:  # nearest n_embd that this head count divides
                embds = [i for i, e in enumerate(self.n_embd) if e % self.n_head[x[3]] == 0]
                if not embds:
                    embds = [i for i, e in enumerate(self.n_embd) if any(e % h == 0 for h in self.n_head)]
                x[1] = min(embds, key=lambda i: (abs(i - x[1]), i))
                if self.n_embd[x[1]] % self.n_head[x[3]]:
                    return self.repair(x)
        return x

    def decode(self, x: Sequence[float]) -> ArchConfig:
        x = self.repair(x)
        return ArchConfig(
            n_layer=self.n_layer[x[0]],
            n_embd=self.n_embd[x[1]],
            n_inner=self.n_inner[x[2]],
            n_head=self.n_head[x[3]],
            vocab_size=self.vocab_size,
            n_positions=self.n_positions,
        )

    def encode(self, config: ArchConfig) -> np.ndarray:
        try:
            return np.array([getattr(self, g).index(getattr(config, g)) for g in GENES], dtype=int)
        except ValueError:
            raise LTSError(f"{config} is outside this search space") from None

    def sample(self, rng: np.random.Generator) -> ArchConfig:
        return self.decode(rng.integers(self.xl, self.xu + 1))
