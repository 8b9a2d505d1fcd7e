"""A family's ONNX graphs from its own torch modules, through torch's ONNX exporter: no hand-written graph.

A family that has no graph writer of its own (GPT-2 has one: ``lts/families/gpt2/graph.py``) describes its model
as a few *pieces*, each a small torch module of one layer at most, and gets every graph the cost layer and
``lts generate`` ask for (``Arch.graph_spec``) by exporting each piece once and splicing copies of them:

    the forward        prologue (input_ids -> hidden, mask) + one block per layer + head (-> next-token logits)
    a block part       the block alone, its last position out (what a composed latency adds)
    "base"             prologue + head (no block)
    the KV graph       the same three with a cache: each block takes its past keys/values and gives the presents

A block is exported once per shape, whatever the depth of the architecture: exporting a 30-layer model whole
costs ~40 s with ``torch.onnx.export(dynamo=True)`` on 2 cores (1.4 s a layer), a spliced one the export of its
block (0.2-0.9 s). The pieces go through torch's TorchScript exporter (``dynamo=False``): 0.2-0.9 s a piece against
2.4 s with dynamo (2 cores, hidden 576-1024; the dynamo export keeps the same parameter names, but pays a fixed
tracing cost per call that a search with hundreds of block shapes would pay each time). Weights keep their torch
names (``export_params`` with no constant folding, so no weight is folded or renamed by the exporter), and a
spliced layer's are renamed to that layer's (``layers.0.`` -> ``layers.7.``): the graph reads a transformers state
dict (``lts.core.onnxgraph.state_dict_weights``), as GPT-2's does. One rewrite: a weight the graph reads only
transposed (a Linear's) is stored transposed, as ``<name>.T``, because ONNX Runtime would fold the Transpose into a
second copy at load.

An exported piece is a :class:`~lts.core.onnxgraph.GraphSpec` (the graph without its weights, their names and
shapes). It is kept in memory and in the cache (``<cache root>/graphs/<key>.onnx``, the key from the piece's kind
and shape, the torch and transformers versions and ``VERSIONS["graph"]``), so a measuring child, which builds the
graph it measures, reads it instead of importing torch and exporting again.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import onnx
from onnx import helper

from lts.core import fileio
from lts.core.cachekeys import cache_key, versions
from lts.core.onnxgraph import TRANSPOSED, GraphSpec

log = logging.getLogger(__name__)
OPSET = 18


@dataclass(frozen=True)
class Piece:
    """How to export one piece: ``make()`` gives the torch module, ``args()`` example inputs (every dynamic size
    distinct and above 1, so none is traced as a constant), with names and dynamic axes; ``key`` is what the piece
    depends on (kind and shape), JSON data. ``as_stored`` names weights to read as stored even when only
    transposed (one another piece also reads, as a tied LM head reads the embedding)."""

    key: Mapping[str, Any]
    make: Callable[[], Any]
    args: Callable[[], tuple]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: Mapping[str, Mapping[int, str]]
    as_stored: tuple[str, ...] = ()


def piece_spec(piece: Piece) -> GraphSpec:
    """The piece's graph: from memory, else from the cache, else exported (and cached)."""
    key = _canonical_key(piece.key)
    spec = _MEMORY.get(key) or _load(key)
    if spec is None:
        spec = export(piece)
        folder = cache_folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fileio.write_bytes(folder / f"{key}.onnx", _to_stored(spec).SerializeToString())
        except OSError as exc:  # a cache that cannot be written costs the next process an export, nothing else
            log.warning("cannot cache an exported graph in %s: %s", folder, exc)
    _MEMORY[key] = spec
    return spec


_MEMORY: dict[str, GraphSpec] = {}  # key -> spec (graphs without weights: kilobytes each)


def _canonical_key(key: Mapping[str, Any]) -> str:
    return cache_key("graph", piece=dict(key), **_libraries())


@functools.cache
def _libraries() -> dict[str, str]:
    """The torch and transformers versions an export depends on (read from their metadata once a process)."""
    import importlib.metadata as md

    return {"torch": md.version("torch"), "transformers": md.version("transformers")}


def _load(key: str) -> GraphSpec | None:
    path = cache_folder() / f"{key}.onnx"
    if not path.is_file():
        return None
    try:
        return _from_stored(onnx.load(str(path)))
    except Exception:  # noqa: BLE001 - a torn or foreign file: exported again
        return None


def _to_stored(spec: GraphSpec) -> onnx.ModelProto:
    """The spec as one small ONNX file: its weights as extra graph inputs, after a marker, with their shapes."""
    model = onnx.ModelProto()
    model.CopyFrom(spec.model)
    model.graph.input.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(shape))
                             for name, shape in spec.weights)
    # the versions its key was made with (lts cache prune reads them: lts/cache.py)
    helper.set_model_props(model, {"lts_weights": str(len(spec.weights)), VERSIONS_PROP: json.dumps(versions("graph"))})
    return model


VERSIONS_PROP = "lts_versions"  # the stored file's metadata entry that records the versions its key was made with


def recorded_versions(path: Path) -> dict[str, int] | None:
    """The versions a stored piece records (None: unreadable or not recorded)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
        recorded = json.loads({p.key: p.value for p in model.metadata_props}[VERSIONS_PROP])
    except Exception:  # noqa: BLE001 - torn, foreign or older: its age cannot be told
        return None
    ok = isinstance(recorded, dict) and all(isinstance(v, int) for v in recorded.values())
    return recorded if ok else None


def _from_stored(model: onnx.ModelProto) -> GraphSpec | None:
    props = {p.key: p.value for p in model.metadata_props}
    if "lts_weights" not in props:
        return None
    n = int(props["lts_weights"])
    inputs = list(model.graph.input)
    kept, weights = (inputs[:-n], inputs[-n:]) if n else (inputs, [])
    model.graph.ClearField("input")
    model.graph.input.extend(kept)
    del model.metadata_props[:]
    return GraphSpec(model, tuple((w.name, tuple(d.dim_value for d in w.type.tensor_type.shape.dim))
                                  for w in weights))


def export(piece: Piece) -> GraphSpec:
    """Export `piece` with torch's TorchScript exporter; its parameters become the spec's weights (by name), any
    other initializer (a buffer such as RoPE's inverse frequencies, a constant) stays in the graph."""
    import torch

    module = piece.make()
    names = {name for name, _ in module.named_parameters()}
    buf = io.BytesIO()
    with quiet_exporter(), torch.no_grad():
        torch.onnx.export(module, piece.args(), buf, dynamo=False, export_params=True, do_constant_folding=False,
                          input_names=list(piece.inputs), output_names=list(piece.outputs),
                          dynamic_axes={k: dict(v) for k, v in piece.dynamic.items()}, opset_version=OPSET)
    model = onnx.load_from_string(buf.getvalue())
    graph = model.graph
    weights, small = [], []
    for init in graph.initializer:
        if init.name in names:
            weights.append((init.name, tuple(int(d) for d in init.dims)))
        else:
            small.append(init)
    missing = names - {name for name, _ in weights}
    if missing:  # the exporter merged or folded a parameter: the graph would not read the state dict
        raise RuntimeError(f"exporting {dict(piece.key)}: parameters not kept as weights: {sorted(missing)}")
    graph.ClearField("initializer")
    graph.initializer.extend(small)
    graph.ClearField("value_info")
    return _weights_transposed(GraphSpec(model, tuple(weights)), piece.as_stored)


def _weights_transposed(spec: GraphSpec, as_stored: Sequence[str] = ()) -> GraphSpec:
    """A 2-D weight read only through a Transpose (a ``torch.nn.Linear``'s, stored (out, in)) becomes the weight
    ``<name>.T`` (``lts.core.onnxgraph.TRANSPOSED``), read as it is: ONNX Runtime would otherwise fold the
    Transpose into a second copy of the weight when it loads the graph. A weight read elsewhere too, or named in
    `as_stored` (a tied embedding), keeps its Transpose."""
    graph = spec.model.graph
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for value in node.input:
            readers.setdefault(value, []).append(node)
    flipped: dict[str, str] = {}  # a Transpose's output -> the transposed weight's name
    for name, shape in spec.weights:
        nodes = readers.get(name, [])
        if name in as_stored or len(shape) != 2 or not nodes or any(n.op_type != "Transpose" for n in nodes):
            continue
        perms = [list(helper.get_attribute_value(a)) for n in nodes for a in n.attribute if a.name == "perm"]
        if any(perm != [1, 0] for perm in perms):
            continue
        flipped.update((n.output[0], name + TRANSPOSED) for n in nodes)
    if not flipped:
        return spec
    kept = [n for n in graph.node if not (n.op_type == "Transpose" and n.output[0] in flipped)]
    for node in kept:
        node.input[:] = [flipped.get(v, v) for v in node.input]
    graph.ClearField("node")
    graph.node.extend(kept)
    done = {w.removesuffix(TRANSPOSED) for w in flipped.values()}
    weights = tuple((name + TRANSPOSED, (shape[1], shape[0])) if name in done else (name, shape)
                    for name, shape in spec.weights)
    return GraphSpec(spec.model, weights)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """torch's exporters warn about things that do not matter here (torchvision ops, axis names, deprecations)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


@contextlib.contextmanager
def _meta_parameters() -> Iterator[None]:
    """Every parameter registered inside is created on the meta device: a module is built without allocating or
    initialising its weights; buffers (computed values such as RoPE's frequencies) are made as usual."""
    import torch

    register = torch.nn.Module.register_parameter

    def on_meta(self: Any, name: str, param: Any) -> None:
        if param is not None and param.device.type != "meta":
            param = torch.nn.Parameter(param.to("meta"), requires_grad=False)
        register(self, name, param)

    torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def build_module(factory: Callable[[], Any]) -> Any:
    """``factory()`` in eval mode with uninitialised weights, each filled with a value of its own (the exporter
    stores identical tensors once: two equal weights would become one)."""
    import torch

    with _meta_parameters():
        module = factory()
    for i, (owner, name, param) in enumerate((m, n, p) for m in module.modules() for n, p in m._parameters.items()
                                             if p is not None):
        if param.device.type == "meta":
            owner._parameters[name] = torch.nn.Parameter(torch.full(param.shape, 1e-3 * (i + 1), dtype=param.dtype),
                                                         requires_grad=False)
    return module.eval()


# ---------------------------------------------------------------- splicing


@dataclass(frozen=True)
class Use:
    """One copy of a piece in a spliced graph: `names` maps the piece's input, output and weight names to the graph's
    (an input to a value made before or a graph input, an output to what reads it or a graph output, a weight to its
    name in the state dict); every other value gets a prefix of its own."""

    spec: GraphSpec
    names: Mapping[str, str]
    rename_weights: Callable[[str], str] = lambda name: name


def splice(name: str, uses: Sequence[Use], inputs: Sequence[onnx.ValueInfoProto],
           outputs: Sequence[onnx.ValueInfoProto]) -> GraphSpec:
    """One graph of the pieces in order; nodes no output needs are left out. Weights named alike (a tied head and
    the embedding) are one weight."""
    nodes: list[onnx.NodeProto] = []
    small: list[onnx.TensorProto] = []
    weights: dict[str, tuple[int, ...]] = {}
    for k, use in enumerate(uses):
        graph = use.spec.model.graph
        mapping = dict(use.names)
        for weight, shape in use.spec.weights:
            new = mapping.setdefault(weight, use.rename_weights(weight))
            if weights.setdefault(new, shape) != shape:
                raise ValueError(f"splicing {name}: weight {new} has shapes {weights[new]} and {shape}")
        prefix = f"p{k}/"

        def rename(value: str, mapping: dict[str, str] = mapping, prefix: str = prefix) -> str:
            return value if not value else mapping.get(value, prefix + value)

        for init in graph.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = rename(init.name)
            small.append(copy)
        for j, node in enumerate(graph.node):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = prefix + (node.name or f"node_{j}")
            copy.input[:] = [rename(v) for v in node.input]
            copy.output[:] = [rename(v) for v in node.output]
            for attr in copy.attribute:  # a subgraph (If, Loop) would need its names mapped too
                if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                    raise ValueError(f"splicing {name}: node {node.name} holds a subgraph")
            nodes.append(copy)
    nodes, small = _live(nodes, small, [o.name for o in outputs])
    opsets: dict[str, int] = {}  # each domain at the newest version a piece uses (ONNX keeps ops compatible)
    for use in uses:
        for entry in use.spec.model.opset_import:
            opsets[entry.domain] = max(opsets.get(entry.domain, 0), entry.version)
    graph = helper.make_graph(nodes, name, list(inputs), list(outputs), initializer=small)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="lts")
    model.ir_version = max(use.spec.model.ir_version for use in uses)
    used = {v for n in nodes for v in n.input}
    return GraphSpec(model, tuple((w, s) for w, s in weights.items() if w in used))


def _live(nodes: list[onnx.NodeProto], small: list[onnx.TensorProto], outputs: list[str]
          ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes the outputs need, in order, and the constants they read."""
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(v for v in node.input if v)
    keep.reverse()
    return keep, [t for t in small if t.name in needed]


def cache_folder() -> Path:
    """Where exported pieces are kept (``lts cache`` lists them as "exported graphs")."""
    return fileio.cache_root() / "graphs"


__all__ = ["Piece", "Use", "VERSIONS_PROP", "build_module", "cache_folder", "export", "piece_spec", "quiet_exporter",
           "recorded_versions", "splice"]
