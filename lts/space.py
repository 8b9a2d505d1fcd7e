"""Architectures (ArchConfig), their ids, and the search space that encodes them for pymoo.

One vocabulary everywhere: Hugging Face GPT-2 field names (``n_layer, n_embd,
n_inner, n_head, vocab_size, n_positions``). A config is frozen; its archid is a
hash of its canonical JSON, so the same architecture has the same id on every
machine, forever.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from lts.errors import LTSError

ARCH_FIELDS = ("n_layer", "n_embd", "n_inner", "n_head", "vocab_size", "n_positions")
GENES = ("n_layer", "n_embd", "n_inner", "n_head")


@dataclass(frozen=True)
class ArchConfig:
    """A GPT-2 architecture: the only thing a candidate is."""

    n_layer: int
    n_embd: int
    n_inner: int
    n_head: int
    vocab_size: int = 50257
    n_positions: int = 1024

    def __post_init__(self) -> None:
        for name in ARCH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise LTSError(f"{name} must be an integer, got {value!r}")
            if value <= 0:
                raise LTSError(f"{name} must be positive, got {value}")
            object.__setattr__(self, name, int(value))  # numpy ints -> int, before the id is ever taken
        if self.n_embd % self.n_head:
            raise LTSError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in ARCH_FIELDS}

    @property
    def archid(self) -> str:
        return archid_of(self)

    def to_gpt2_config(self, **overrides: Any):
        """A transformers GPT2Config with exactly this shape (tied LM head, GPT-2 defaults)."""
        from transformers import GPT2Config

        eos = min(50256, self.vocab_size - 1)
        kwargs: dict[str, Any] = dict(self.to_dict(), bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=True)
        kwargs.update(overrides)
        return GPT2Config(**kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> "ArchConfig":
        """Read the architecture fields of a (HF or LTS) config dict, ignoring other HF keys."""
        if not isinstance(data, Mapping):
            raise LTSError(f"{source}: expected a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise LTSError(f"{source}: model_type is {model_type!r}, LTS handles GPT-2 ('gpt2') only")
        values: dict[str, Any] = {}
        for name in GENES:
            if name == "n_inner" and data.get("n_inner") is None and "n_embd" in data:
                values["n_inner"] = 4 * data["n_embd"] if isinstance(data["n_embd"], int) else data["n_embd"]
                continue
            if name not in data:
                raise LTSError(f"{source}: missing field {name!r}")
            values[name] = data[name]
        for name in ("vocab_size", "n_positions"):
            if name in data:
                values[name] = data[name]
        try:
            return cls(**values)
        except LTSError as exc:
            raise LTSError(f"{source}: {exc}") from None

    @classmethod
    def from_gpt2_config(cls, config: Any) -> "ArchConfig":
        return cls.from_dict(config.to_dict(), source=type(config).__name__)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ArchConfig":
        """Load from a config.json or a folder holding one (e.g. models/<archid>/)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise LTSError(f"no config.json at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LTSError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        return cls.from_dict(data, source=str(path))


def archid_of(config: ArchConfig) -> str:
    """`gpt2_` + 12 hex of sha1 over the canonical JSON of the architecture fields."""
    canonical = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return "gpt2_" + hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]


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
    def from_dict(cls, data: Mapping[str, Any] | None) -> "SearchSpace":
        data = dict(data or {})
        unknown = sorted(set(data) - set(ARCH_FIELDS))
        if unknown:
            raise LTSError(f"unknown space field(s): {', '.join(unknown)} (known: {', '.join(ARCH_FIELDS)})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

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
