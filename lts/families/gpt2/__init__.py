"""GPT-2, the family LTS searches: Archai's space, and the LTS paper's with a block shape of its own per layer.

One vocabulary: Hugging Face GPT-2 field names (``n_layer, n_embd, n_inner, n_head, vocab_size,
n_positions``); ``n_inner`` and ``n_head`` may hold one value per layer (the LTS paper's space). An
:class:`ArchConfig` is frozen; its archid is a hash of its canonical JSON, so the same architecture has the
same id on every machine, forever. It owns what the rest of LTS composes (``lts.families.Arch``): its
parameter count, its blocks (what a cost is the sum of), its ONNX graphs (``graph.py``: the forward and the
KV-cache graph, written by one block writer), its transformers config and model (``hf.py`` for the per-layer
one), and how people read it. Its search space is ``space.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from lts.core.errors import LTSError
from lts.families import HF_BOOKKEEPING, archid_of

ARCH_FIELDS = ("n_layer", "n_embd", "n_inner", "n_head", "vocab_size", "n_positions")
GENES = ("n_layer", "n_embd", "n_inner", "n_head")
PER_LAYER = ("n_inner", "n_head")  # the fields that may hold one value per layer
PER_LAYER_MODEL_TYPE = "lts_gpt2"  # the model type a per-layer architecture is saved as (hf.py registers it)


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

    family: ClassVar[Any]  # GPT2Family, set below (lts.families.Family)

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
    def max_positions(self) -> int:
        """The longest sequence it takes (``Arch.max_positions``): ``n_positions``."""
        return self.n_positions

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
        """``gpt2_`` + 12 hex of sha1 over :meth:`to_dict`'s canonical JSON (a per-layer field as a list, so a
        homogeneous architecture keeps the id it always had)."""
        return archid_of(self)

    def columns(self) -> dict[str, str]:
        """The four genes as people read them: ``n_inner: 512x2,768`` for a per-layer one."""
        return {name: self.describe(name) for name in GENES}

    # ---- parameters (the quality proxy), in closed form; exact against the built model (tested)

    def non_embedding_params(self) -> int:
        """Parameters of the model except wte, wpe and the tied lm_head: every block's, plus ln_f (2d)."""
        return sum(block_params(b.n_embd, b.n_inner) for b in self.blocks()) + 2 * self.n_embd

    def embedding_params(self) -> int:
        """wte + wpe (the LM head is tied to wte, so it adds nothing)."""
        return (self.vocab_size + self.n_positions) * self.n_embd

    def total_params(self) -> int:
        return self.non_embedding_params() + self.embedding_params()

    # ---- what a cost is composed of, and the graphs

    def part_key(self, part: str) -> tuple[int, ...]:
        """What a part's timing depends on: the embeddings and head ("base") on (n_embd, vocab_size), a block on
        its shape (n_embd, n_inner, n_head)."""
        if part == "base":
            return (self.n_embd, self.vocab_size)
        block, _ = self.block_parts()[part]
        return (block.n_embd, block.n_inner, block.n_head)

    def graph_spec(self, part: str = "full") -> Any:
        """Its ONNX graph without weights, by part: "full", "base", one of :meth:`block_parts`, or "kv"
        (``graph.py``)."""
        from lts.families.gpt2.graph import graph_spec

        return graph_spec(self, part)

    def kv_layout(self) -> list[tuple[int, int]]:
        return [(h, self.n_embd // h) for h in self.layer_values("n_head")]

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

    def to_hf_config(self, **overrides: Any) -> Any:
        """A transformers config with exactly this shape (tied LM head, GPT-2 defaults): a GPT2Config, or for a
        per-layer architecture the registered per-layer config (``hf.py``), with the same field names."""
        eos = min(50256, self.vocab_size - 1)
        kwargs: dict[str, Any] = dict(self.to_dict(), bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=True)
        kwargs.update(overrides)
        if self.per_layer:  # registered by hf.py, which `import lts` loads with transformers
            from transformers import AutoConfig

            try:
                return AutoConfig.for_model(PER_LAYER_MODEL_TYPE, **kwargs)
            except ValueError:
                raise LTSError("this transformers cannot hold a per-layer GPT-2 (lts.families.gpt2.hf did not register "
                               f"{PER_LAYER_MODEL_TYPE!r} with it)") from None
        from transformers import GPT2Config

        return GPT2Config(**kwargs)

    def to_model(self, **overrides: Any) -> Any:
        """A transformers causal LM of exactly this shape, randomly initialised: ``GPT2LMHeadModel``, or the
        per-layer model (``hf.py``) that ``AutoModelForCausalLM`` loads back."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_config(self.to_hf_config(**overrides))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> ArchConfig:
        """Read the architecture fields of a (HF or LTS) config dict, ignoring other HF keys."""
        if not isinstance(data, Mapping):
            raise LTSError(f"{source}: expected a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type", "gpt2")
        if model_type not in GPT2Family.model_types:
            raise LTSError(f"{source}: model_type is {model_type!r}, not GPT-2's ('gpt2')")
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
    def from_hf_config(cls, config: Any) -> ArchConfig:
        return cls.from_dict(config.to_dict(), source=type(config).__name__)


def block_params(d: int, f: int) -> int:
    """One block's parameters: ln_1 and ln_2 (2d each), c_attn (3d^2 + 3d), attn c_proj (d^2 + d), c_fc
    (d*f + f), mlp c_proj (f*d + d). The head count moves none: it splits c_attn's output."""
    return 4 * d * d + 2 * d * f + f + 9 * d


class GPT2Family:
    """GPT-2 (``lts.families.Family``): reads ``gpt2`` configs (lists allowed in ``n_inner``/``n_head``) and the
    per-layer ``lts_gpt2`` ones it writes."""

    name = "gpt2"
    title = "GPT-2"
    model_types = ("gpt2", PER_LAYER_MODEL_TYPE)
    dropout_fields = ("resid_pdrop", "embd_pdrop", "attn_pdrop")

    def arch(self, data: Mapping[str, Any], *, source: str) -> ArchConfig:
        return ArchConfig.from_dict(data, source=source)

    def space(self, data: Mapping[str, Any]) -> Any:
        from lts.families.gpt2.space import SearchSpace

        return SearchSpace.from_dict(data)

    def hf_config(self, data: Mapping[str, Any], *, source: str) -> Any | None:
        """The per-layer config (``hf.py``) of a config.json whose ``n_inner`` / ``n_head`` are lists, written as
        ``lts_gpt2`` or by hand as ``gpt2``, after its architecture is checked (a list whose length is not n_layer,
        a head count that does not divide n_embd: one line); None for a homogeneous one (transformers reads it)."""
        if data.get("model_type") not in self.model_types:
            return None  # not a config.json of GPT-2's (e.g. a record)
        if data["model_type"] == "gpt2" and not any(isinstance(data.get(k), list) for k in PER_LAYER):
            return None
        arch = ArchConfig.from_dict(data, source=source)
        from lts.families.gpt2.hf import PerLayerGPT2Config

        fields = {k: v for k, v in data.items() if k not in HF_BOOKKEEPING}
        return PerLayerGPT2Config(**{**fields, **arch.to_dict()})

    def from_hf_model(self, model: Any) -> ArchConfig | None:
        """The architecture when `model` is a GPT-2 that :meth:`ArchConfig.graph_spec` computes exactly: the
        standard block (tanh GELU, eps 1e-5, 1/sqrt(d) attention scaling, tied head, float32), homogeneous or
        per layer; None for any other variant (the torch exporter serves those)."""
        c = model.config
        kinds = {("gpt2", "GPT2LMHeadModel"), (PER_LAYER_MODEL_TYPE, "PerLayerGPT2LMHeadModel")}
        if (getattr(c, "model_type", None), type(model).__name__) not in kinds:
            return None
        import torch

        standard = (c.activation_function == "gelu_new" and c.layer_norm_epsilon == 1e-5 and c.scale_attn_weights
                    and not c.scale_attn_by_inverse_layer_idx and not c.reorder_and_upcast_attn
                    and not getattr(c, "add_cross_attention", False) and c.tie_word_embeddings
                    and all(p.dtype == torch.float32 for p in model.parameters()))
        if not standard:
            return None
        try:
            return ArchConfig.from_hf_config(c)
        except LTSError:
            return None

    def register_with_transformers(self) -> None:
        from lts.families.gpt2.hf import register

        register()


FAMILY = GPT2Family()
ArchConfig.family = FAMILY

__all__ = ["ARCH_FIELDS", "ArchConfig", "Block", "FAMILY", "GENES", "GPT2Family", "PER_LAYER",
           "PER_LAYER_MODEL_TYPE", "block_params"]
