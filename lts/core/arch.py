"""Architectures (ArchConfig) and their ids: the vocabulary every subpackage shares.

One vocabulary everywhere: Hugging Face GPT-2 field names (``n_layer, n_embd,
n_inner, n_head, vocab_size, n_positions``). A config is frozen; its archid is a
hash of its canonical JSON, so the same architecture has the same id on every
machine, forever.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lts.core.errors import LTSError

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

    def to_gpt2_config(self, **overrides: Any) -> Any:
        """A transformers GPT2Config with exactly this shape (tied LM head, GPT-2 defaults)."""
        from transformers import GPT2Config

        eos = min(50256, self.vocab_size - 1)
        kwargs: dict[str, Any] = dict(self.to_dict(), bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=True)
        kwargs.update(overrides)
        return GPT2Config(**kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> ArchConfig:
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
    def from_gpt2_config(cls, config: Any) -> ArchConfig:
        return cls.from_dict(config.to_dict(), source=type(config).__name__)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ArchConfig:
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
