"""Model families: what an architecture is, behind one protocol, so the rest of LTS never reads its fields.

A family is one package here, ``lts/families/<name>/``, whose ``FAMILY`` object is a :class:`Family`; every
package in this folder is discovered (nothing else to register). A family kept outside LTS is an installed
package that names its ``FAMILY`` under the entry-point group ``lts.families`` (``toy = toy_family:FAMILY``).
An architecture of a family is an :class:`Arch`: a frozen value whose id, parameter count, block parts, ONNX
graphs, KV-cache layout, transformers config and model, and readable columns come from its own methods. The
search asks the family for its space (``family.space(...)``); the evaluator, the store, the report, train.py,
generate_text.py and benchmark.py ask the architecture. GPT-2 (``lts.families.gpt2``: Archai's space and the
LTS paper's per-layer one) is the only family LTS ships; docs/extending.md says what a new one writes.

This module holds the protocols, the registry and the family-neutral readers:

    family(name)                  -> the Family called `name` ("gpt2")
    family_of_config(data)        -> the Family of a config.json or record dict (its family, else model_type)
    to_record(arch)               -> the dict another process reads back with arch_from_dict
    arch_from_dict(data, source=) -> an Arch from a config.json / record dict (one line when it is not one)
    load_arch(path)               -> the same from a config.json or a model folder
    archid_of(arch)               -> ``<family>_`` + 12 hex of sha1 over the canonical JSON of ``arch.to_dict()``
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
from pathlib import Path
from typing import Any, ClassVar, Hashable, Iterator, Mapping, Protocol, runtime_checkable

from lts.core import hub
from lts.core.errors import LTSError

DEFAULT_FAMILY = "gpt2"  # what a config or space that names no family is (every file LTS ever wrote)
HF_BOOKKEEPING = ("model_type", "architectures", "transformers_version")  # config.json keys that are no setting


@runtime_checkable
class Arch(Protocol):
    """One architecture of some family: frozen and hashable; nothing mutates it after its id is taken."""

    family: ClassVar[Family]
    vocab_size: int  # tokens its embedding holds
    max_positions: int  # the longest sequence it takes (GPT-2's n_positions, Llama's max_position_embeddings)

    @property
    def archid(self) -> str:
        """:func:`archid_of` (the same architecture has the same id on every machine, forever)."""

    def to_dict(self) -> dict[str, Any]:
        """Its fields, as its transformers config names them: what the archid hashes and a record stores."""

    def columns(self) -> dict[str, str]:
        """Its fields as people read them (report, gallery, logs): name -> text, e.g. ``n_inner: 512x2,768``."""

    def non_embedding_params(self) -> int:
        """The search's quality proxy: parameters outside the token/position embeddings (closed form, exact)."""

    def total_params(self) -> int:
        """Every parameter of its transformers model (a tied head counted once)."""

    def block_parts(self) -> dict[str, tuple[Hashable, int]]:
        """The block graphs a composed latency adds up: part name -> (its shape, how many layers have it)."""

    def part_key(self, part: str) -> tuple[Any, ...]:
        """What the timing of `part` ("base" or one of :meth:`block_parts`) depends on: the shape-timing key. Every
        block part of equal key is timed once, whichever architecture (and part name) it comes from."""

    def graph_spec(self, part: str = "full") -> Any:
        """Its ONNX graph without weights (``lts.core.onnxgraph.GraphSpec``), by part: "full" (``input_ids`` (1, S)
        -> next-token ``logits``), "base" (the same without blocks), a block part (``hidden`` (1, S, d) and an
        additive causal ``mask`` (1, 1, S, S) -> the last position), or "kv" (the generation graph: ``input_ids``,
        ``attention_mask`` and ``past_key_i``/``past_value_i`` -> ``logits`` and the presents)."""

    def kv_layout(self) -> list[tuple[int, int]]:
        """(heads, head_dim) of each layer's KV cache, in layer order: what the "kv" graph's past inputs hold."""

    def to_hf_config(self, **overrides: Any) -> Any:
        """A transformers config of exactly this shape (``AutoConfig`` loads it back once ``lts`` is imported)."""

    def to_model(self, **overrides: Any) -> Any:
        """A randomly initialised transformers causal LM of exactly this shape."""


@runtime_checkable
class Family(Protocol):
    """A model family: its name, the config.json ``model_type`` values it reads, its architectures and space."""

    name: str  # the archid prefix, and the ``family:`` of a space
    title: str  # as people write it ("GPT-2")
    model_types: tuple[str, ...]  # config.json model_type values it reads (the first is what it writes)
    dropout_fields: tuple[str, ...]  # its transformers config's dropout probabilities (train.py --dropout sets them)

    def arch(self, data: Mapping[str, Any], *, source: str) -> Arch:
        """An architecture from its :meth:`Arch.to_dict` or a config.json dict; LTSError (one line) otherwise."""

    def space(self, data: Mapping[str, Any]) -> Any:
        """Its search space from the YAML ``space:`` mapping (pymoo named variables; see lts.search.space)."""

    def hf_config(self, data: Mapping[str, Any], *, source: str) -> Any | None:
        """The transformers config of a config.json that transformers cannot read alone (None: it can)."""

    def from_hf_model(self, model: Any) -> Arch | None:
        """The architecture of a loaded transformers model when its own graphs compute that model exactly."""

    def register_with_transformers(self) -> None:
        """Make its own model types known to transformers' Auto classes (nothing when it has none)."""


ENTRY_POINTS = "lts.families"  # the entry-point group of families installed beside LTS


@functools.cache
def _registry() -> dict[str, Family]:
    found: dict[str, Family] = {}

    def add(fam: Any, where: str, name: str | None = None) -> None:
        if not isinstance(fam, Family) or (name is not None and fam.name != name):
            raise TypeError(f"{where} must be a Family{f' named {name!r}' if name else ''}, got {fam!r}")
        if fam.name in found:
            raise TypeError(f"{where}: a model family named {fam.name!r} is already known")
        found[fam.name] = fam

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "FAMILY"):
            add(module.FAMILY, f"{module.__name__}.FAMILY", info.name)
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
        add(ep.load(), f"entry point {ep.name} = {ep.value}")
    return found


def graph_modules() -> tuple[str, ...]:
    """The graph modules of the families in this folder (``lts.families.<name>.graph``): what a measuring child's
    fork server imports once, so that no child imports a family's graph code itself."""
    found = sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
    return tuple(f"{__name__}.{info.name}.graph" for info in found
                 if info.ispkg and importlib.util.find_spec(f"{__name__}.{info.name}.graph") is not None)


def families() -> Iterator[Family]:
    """Every family, by name."""
    return iter(_registry().values())


def family(name: str) -> Family:
    try:
        return _registry()[name]
    except KeyError:
        raise LTSError(f"unknown model family {name!r} (known: {', '.join(_registry())})") from None


def family_of_config(data: Mapping[str, Any], *, source: str = "config") -> Family:
    """The family that reads a config.json or record dict: its ``family`` (a record of :func:`to_record`), else
    its ``model_type`` (a config.json), else the default."""
    if "family" in data:
        return family(str(data["family"]))
    model_type = data.get("model_type")
    if model_type is None:
        return family(DEFAULT_FAMILY)
    for fam in families():
        if model_type in fam.model_types:
            return fam
    known = "; ".join(f"{fam.title} ({', '.join(map(repr, fam.model_types))})" for fam in families() if fam.model_types)
    raise LTSError(f"{source}: model_type is {model_type!r}; the model families LTS knows are {known}")


def to_record(arch: Arch) -> dict[str, Any]:
    """``arch.to_dict()``, with ``family`` when it is not the default: what :func:`arch_from_dict` reads back
    in another process (a measuring child, a Ray worker) or a stored evaluation."""
    out = arch.to_dict()
    return out if arch.family.name == DEFAULT_FAMILY else {"family": arch.family.name, **out}


def with_fields(arch: Arch, **fields: Any) -> Arch:
    """`arch` with some fields replaced (e.g. ``vocab_size`` to match a tokenizer), checked like any other."""
    return arch_from_dict({**to_record(arch), **fields}, source=f"{arch.archid} with {fields}")


def arch_from_dict(data: Any, *, source: str = "config") -> Arch:
    """The architecture a config.json or record dict describes (one line naming `source` when it is not one)."""
    if not isinstance(data, Mapping):
        raise LTSError(f"{source}: expected a JSON object, got {type(data).__name__}")
    return family_of_config(data, source=source).arch(data, source=source)


def load_arch(path: str | os.PathLike) -> Arch:
    """The architecture of a config.json, or of a folder holding one (e.g. models/<archid>/)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise LTSError(f"no config.json at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LTSError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return arch_from_dict(data, source=str(path))


def hf_config_of_file(path: Path) -> Any | None:
    """The transformers config of a config.json that only a family can read (e.g. a per-layer GPT-2 written by
    hand), after that family checked its architecture (one line when it is wrong); None for any other file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # transformers says what is wrong with it
    if not isinstance(data, dict):
        return None
    try:
        fam = family_of_config(data, source=str(path))
    except LTSError:
        return None  # not a family's: transformers reads it (or says why not)
    return fam.hf_config(data, source=str(path))


def arch_of_hf_model(model: Any) -> Arch | None:
    """The architecture of a loaded transformers model whose family's own graphs compute it exactly, else None."""
    for fam in families():
        arch = fam.from_hf_model(model)
        if arch is not None:
            return arch
    return None


hub.CONFIG_READERS.append(hf_config_of_file)  # core reads any family's config.json through it


def register_with_transformers() -> None:
    for fam in families():
        fam.register_with_transformers()


def archid_of(arch: Arch) -> str:
    """``<family>_`` + 12 hex of sha1 over the canonical JSON of ``arch.to_dict()`` (sorted keys, no spaces)."""
    canonical = json.dumps(arch.to_dict(), sort_keys=True, separators=(",", ":"))
    return f"{arch.family.name}_" + hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]


__all__ = ["Arch", "DEFAULT_FAMILY", "Family", "HF_BOOKKEEPING", "arch_from_dict", "arch_of_hf_model", "archid_of",
           "families", "family", "family_of_config", "graph_modules",
           "hf_config_of_file", "load_arch", "register_with_transformers",
           "to_record", "with_fields"]
