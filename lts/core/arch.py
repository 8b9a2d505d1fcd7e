"""Architectures (ArchConfig) and their ids: the vocabulary every subpackage shares.

One vocabulary everywhere: Hugging Face GPT-2 field names (``n_layer, n_embd,
n_inner, n_head, vocab_size, n_positions``); ``n_inner`` and ``n_head`` may hold one
value per layer (the LTS paper's space). A config is frozen; its archid is a hash of
its canonical JSON, so the same architecture has the same id on every machine,
forever. The architecture owns what the rest composes: its blocks (what a cost is the
sum of), its transformers config and model, and how people read it.
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
PER_LAYER = ("n_inner", "n_head")  # the fields that may hold one value per layer
HF_BOOKKEEPING = ("model_type", "architectures", "transformers_version")  # config.json keys that are no setting
PER_LAYER_MODEL_TYPE = "lts_gpt2"  # the model type a per-layer architecture is saved as (lts.core.hf registers it)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise LTSError(f"{name} must be an integer, got {value!r}")
    if value <= 0:
        raise LTSError(f"{name} must be positive, got {value}")
    return int(value)  # numpy ints -> int, before the id is ever taken


@dataclass(frozen=True)
class Block:
    """One transformer block's shape: what a block cost depends on."""

    n_embd: int
    n_inner: int
    n_head: int


@dataclass(frozen=True)
class ArchConfig:
    """A GPT-2 architecture: the only thing a candidate is.

    ``n_inner`` and ``n_head`` are one integer for every layer, or a tuple with one entry per layer (the
    LTS paper's per-layer space); a tuple whose entries are all equal is the integer, so a homogeneous
    architecture has one form and one archid, whichever way it was written.
    """

    n_layer: int
    n_embd: int
    n_inner: int | tuple[int, ...]
    n_head: int | tuple[int, ...]
    vocab_size: int = 50257
    n_positions: int = 1024

    def __post_init__(self) -> None:
        for name in ARCH_FIELDS:
            value = getattr(self, name)
            if name in PER_LAYER and isinstance(value, (list, tuple)):
                continue
            if isinstance(value, (list, tuple, np.ndarray)):
                raise LTSError(f"{name} must be one integer for every layer (GPT-2 has one {name}), got {value!r}")
            object.__setattr__(self, name, _integer(name, value))
        for name in PER_LAYER:
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                continue
            if len(value) != self.n_layer:
                raise LTSError(f"{name} has {len(value)} entries, one per layer is {self.n_layer} (n_layer)")
            values = tuple(_integer(f"{name}[{i}]", v) for i, v in enumerate(value))
            object.__setattr__(self, name, values[0] if len(set(values)) == 1 else values)
        for i, h in enumerate(self.layer_values("n_head")):
            if self.n_embd % h:
                where = f"n_head[{i}]" if self.per_layer else "n_head"
                raise LTSError(f"n_embd={self.n_embd} is not divisible by {where}={h}")

    @property
    def per_layer(self) -> bool:
        """True when some layer's n_inner or n_head differs from another's."""
        return any(isinstance(getattr(self, name), tuple) for name in PER_LAYER)

    def layer_values(self, name: str) -> tuple[int, ...]:
        """`name` ("n_inner" or "n_head") for each layer."""
        value = getattr(self, name)
        return value if isinstance(value, tuple) else (value,) * self.n_layer

    def blocks(self) -> tuple[Block, ...]:
        """The transformer blocks, layer by layer: what a block cost table composes."""
        return tuple(Block(self.n_embd, f, h) for f, h in zip(self.layer_values("n_inner"),
                                                               self.layer_values("n_head")))

    def block_parts(self) -> dict[str, tuple[Block, int]]:
        """The block shapes a composed latency adds up, by part name, with how many layers have each: "block"
        (every layer) for a homogeneous architecture, else ``block:<n_inner>x<n_head>`` per distinct shape."""
        if not self.per_layer:
            return {"block": (self.blocks()[0], self.n_layer)} if self.n_layer else {}
        counts: dict[Block, int] = {}
        for b in self.blocks():
            counts[b] = counts.get(b, 0) + 1
        return {f"block:{b.n_inner}x{b.n_head}": (b, n) for b, n in counts.items()}

    def to_dict(self) -> dict[str, Any]:
        """Hugging Face GPT-2 field names; a per-layer field as a list."""
        return {name: (list(v) if isinstance(v := getattr(self, name), tuple) else v) for name in ARCH_FIELDS}

    @property
    def archid(self) -> str:
        return archid_of(self)

    def describe(self, name: str) -> str:
        """A field as people read it: ``512``, or per layer with runs collapsed, ``512x2,768,1024``."""
        value = getattr(self, name)
        if not isinstance(value, tuple):
            return str(value)
        runs: list[list[int]] = []
        for v in value:
            if runs and runs[-1][0] == v:
                runs[-1][1] += 1
            else:
                runs.append([v, 1])
        return ",".join(f"{v}x{n}" if n > 1 else str(v) for v, n in runs)

    def to_gpt2_config(self, **overrides: Any) -> Any:
        """A transformers config with exactly this shape (tied LM head, GPT-2 defaults): a GPT2Config, or for a
        per-layer architecture the registered per-layer config (``lts.core.hf``), with the same field names."""
        eos = min(50256, self.vocab_size - 1)
        kwargs: dict[str, Any] = dict(self.to_dict(), bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=True)
        kwargs.update(overrides)
        if self.per_layer:  # registered by lts.core.hf, which `import lts` loads with transformers
            from transformers import AutoConfig

            try:
                return AutoConfig.for_model(PER_LAYER_MODEL_TYPE, **kwargs)
            except ValueError:
                raise LTSError("this transformers cannot hold a per-layer GPT-2 (lts.core.hf did not register "
                               f"{PER_LAYER_MODEL_TYPE!r} with it)") from None
        from transformers import GPT2Config

        return GPT2Config(**kwargs)

    def to_model(self, **overrides: Any) -> Any:
        """A transformers causal LM of exactly this shape, randomly initialised: ``GPT2LMHeadModel``, or the
        per-layer model (``lts.core.hf``) that ``AutoModelForCausalLM`` loads back."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_config(self.to_gpt2_config(**overrides))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> ArchConfig:
        """Read the architecture fields of a (HF or LTS) config dict, ignoring other HF keys."""
        if not isinstance(data, Mapping):
            raise LTSError(f"{source}: expected a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type", "gpt2")
        if model_type not in ("gpt2", PER_LAYER_MODEL_TYPE):
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
    """`gpt2_` + 12 hex of sha1 over the canonical JSON of the architecture fields (a per-layer field as a list,
    so a homogeneous architecture keeps the id it always had)."""
    canonical = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return "gpt2_" + hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]
