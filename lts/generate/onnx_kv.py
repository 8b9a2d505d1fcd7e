"""A causal LM as an ONNX graph with a KV cache, cached by content hash, decoded with ONNX Runtime.

A model of a family LTS searches gets the very graph the search measures (its ``graph_spec("kv")``,
the ``onnx_decode_latency_s`` and ``onnx_generation_memory_mb`` objectives) filled with its
weights: written directly (``lts.families.arch_of_hf_model`` says when: GPT-2's standard block, in milliseconds;
a standard float32 Llama, its graph spliced from its exported prologue and head and its fused layer). Other models
(OPT, GPT-Neo, ...) are exported whole with torch's exporter. Both have the
same interface; one graph serves both phases of generation::

    inputs : input_ids (B, S) int64, attention_mask (B, P+S) int64 (0 = left padding),
             past_key_i / past_value_i (B, H, P, D) float32, i < n_layers
    outputs: logits (B, V) float32 for the last position only, present_key_i / present_value_i (B, H, P+S, D)

Prefill runs it with an empty past (P = 0) and the whole prompt; each decode step with
S = 1 and the presents of the step before. Prompts of different lengths share a batch left-padded,
the mask marking the padding (positions and attention skip it, as ``generate`` does).

Other families are exported with ``torch.onnx.export(dynamo=True)`` of a small wrapper that
fills a transformers ``DynamicCache`` from plain tensors (transformers 5 takes Cache objects,
not tuples). The LM head runs on the last position only (``logits_to_keep=1``), as ``generate`` does.

The export is cached in ``<cache>/<key>/``, the key made by :mod:`lts.core.cachekeys` from the
model's class, config, a digest of its weights, the library versions and the "onnx_export" (and
"graph") versions; an INT8 copy sits beside it in ``<key>-int8-<key of the copy>/``. The cache is
the ``cache_dir`` argument, else ``onnx/`` under :func:`lts.core.fileio.cache_root`
(``$LTS_CACHE_DIR``, else ``$XDG_CACHE_HOME/lts``, else ``~/.cache/lts``); meta.json records the
versions the folder's key was made with (``lts cache prune`` reads them). Folders are written to a
temp folder and renamed into place, so a crash never leaves half a model and two processes
exporting the same model at once both end with a complete one. Folders made before these keys
simply miss (they stay unread; deleting them is safe).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lts.core import fileio, procs
from lts.core.cachekeys import VERSIONS, cache_key, versions
from lts.core.errors import LTSError, first_line
from lts.cost.quantize import check_precision, quantize_model
from lts.cost.target import Target
from lts.families.exported import quiet_exporter

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
META_FILE = "meta.json"


def default_cache_dir() -> Path:
    """``onnx/`` under :func:`lts.core.fileio.cache_root` (``$LTS_CACHE_DIR``, else ``$XDG_CACHE_HOME/lts``,
    else ``~/.cache/lts``)."""
    return fileio.cache_root() / "onnx"


def direct_arch(model: Any) -> Any:
    """The architecture when `model` is one that its family's own generation graph computes exactly (the graph
    the search measures: ``Arch.graph_spec("kv")``), else None: the torch exporter serves it."""
    from lts.families import arch_of_hf_model

    if _needs_external_data(model):
        return None
    return arch_of_hf_model(model)


def write_direct_onnx(model: Any, out_dir: str | os.PathLike) -> Path:
    """Write LTS's generation graph for `model`, filled with its weights (no torch export)."""
    from lts.core.onnxgraph import kv_names, state_dict_weights, write_onnx

    arch = direct_arch(model)
    if arch is None:
        raise LTSError(f"{type(model).__name__} is not a model LTS's own graphs compute: it needs the torch exporter")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_onnx(arch.graph_spec("kv"), out_dir / MODEL_FILE, state_dict_weights(model.state_dict()))
    layout = arch.kv_layout()
    past, present = kv_names(len(layout))
    meta = {"format": VERSIONS["onnx_export"], "versions": versions("onnx_export"), "builder": "lts",
            "n_layers": len(layout),
            "kv_layout": [list(pair) for pair in layout], "vocab_size": arch.vocab_size,
            "inputs": ["input_ids", "attention_mask", *past], "outputs": ["logits", *present],
            "export_seconds": round(time.perf_counter() - t0, 3)}
    fileio.write_json(out_dir / META_FILE, meta)
    return out_dir


def model_content_hash(model: Any) -> str:
    """The ONNX cache key of `model` (:func:`lts.core.cachekeys.cache_key`, sha1 hex): what the exported
    graph depends on: class, config, every weight, library versions, and which builder writes it.

    Hashes the tensors in memory (not files), so a hub model, a local folder and a model built
    in this process are keyed the same way. Tied weights are hashed once per name; ~0.2 s per 100 MB.
    """
    import onnx
    import torch
    import transformers

    config = model.config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "_commit_hash", "dtype", "torch_dtype"):
        config.pop(volatile, None)
    config = json.loads(json.dumps(config, default=str))  # JSON data (a config may hold enums, dtypes)
    # LTS's own generation graph (versioned by VERSIONS["graph"], which the key uses) or the torch exporter.
    builder = "torch.onnx.export" if direct_arch(model) is None else "lts"
    return cache_key("onnx_export", model_class=type(model).__name__, config=config, weights=weights_digest(model),
                     torch=torch.__version__, transformers=transformers.__version__, onnx=onnx.__version__,
                     builder=builder)


def weights_digest(model: Any) -> str:
    """sha256 (hex) of every tensor of `model`'s state dict: name, dtype, shape and bytes (content, not source)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _kv_layout(model: Any) -> list[tuple[int, int]]:
    """(heads, head_dim) of each layer's cache, read from one tiny forward (works for any decoder)."""
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.zeros((1, 2), dtype=torch.long), use_cache=True)
    cache = out.past_key_values
    if cache is None or not hasattr(cache, "layers"):
        raise LTSError(f"{type(model).__name__} returns no KV cache; the ONNX backend needs one (use --backend torch)")
    layout = []
    for layer in cache.layers:
        keys, values = layer.keys, layer.values
        if keys is None or keys.dim() != 4 or keys.shape != values.shape:
            raise LTSError(f"{type(model).__name__}: unsupported KV cache layout for ONNX export (use --backend torch)")
        layout.append((int(keys.shape[1]), int(keys.shape[3])))
    return layout


def _make_wrapper(model: Any, n_layers: int) -> Any:
    import torch
    from transformers import DynamicCache

    class KVWrapper(torch.nn.Module):
        """forward(input_ids, attention_mask, *past) -> (last-position logits, *presents), past flat (k0, v0, ...).

        Position ids come from the mask as ``generate`` makes them (cumsum - 1, padding at 1), for the
        models whose forward takes them (GPT-2 and most); the others (OPT) derive them from the mask.
        """

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.takes_positions = "position_ids" in inspect.signature(model.forward).parameters

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor):
            cache = DynamicCache([(past[2 * i], past[2 * i + 1]) for i in range(n_layers)])
            extra = {}
            if self.takes_positions:
                positions = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
                extra["position_ids"] = positions[:, -input_ids.shape[1]:]
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
                             use_cache=True, logits_to_keep=1, **extra)
            presents = []
            for layer in out.past_key_values.layers:
                presents += [layer.keys, layer.values]
            return (out.logits[:, -1, :], *presents)  # (B, V), (B, H, P+S, D) ...

    return KVWrapper().eval()


def export_kv_onnx(model: Any, out_dir: str | os.PathLike) -> Path:
    """Export `model` (float32, CPU) with a KV cache into `out_dir` (model.onnx + meta.json); returns the folder."""
    import torch
    from torch.export import Dim

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layout = _kv_layout(model)
    n_layers = len(layout)
    wrapper = _make_wrapper(model, n_layers)
    # Example sizes all distinct and > 1, so that none is specialised to a constant; Dim.AUTO lets the
    # exporter work out how they relate (the mask's length is past + seq; some families also tie them).
    ids = torch.zeros((2, 3), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    past = []
    for heads, head_dim in layout:
        past += [torch.zeros((2, heads, 5, head_dim)), torch.zeros((2, heads, 5, head_dim))]
    past_names = [f"past_{kind}_{i}" for i in range(n_layers) for kind in ("key", "value")]
    present_names = [f"present_{kind}_{i}" for i in range(n_layers) for kind in ("key", "value")]
    auto = Dim.AUTO
    dynamic_shapes = ({0: auto, 1: auto}, {0: auto, 1: auto}, tuple({0: auto, 2: auto} for _ in past))
    t0 = time.perf_counter()
    with quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            wrapper, (ids, mask, *past), dynamo=True, dynamic_shapes=dynamic_shapes,
            input_names=["input_ids", "attention_mask", *past_names], output_names=["logits", *present_names],
            optimize=True, verbose=False)
        program.save(str(out_dir / MODEL_FILE), external_data=_needs_external_data(model))
    meta = {"format": VERSIONS["onnx_export"], "versions": versions("onnx_export"), "builder": "torch.onnx.export",
            "n_layers": n_layers,
            "kv_layout": layout, "vocab_size": int(model.config.get_text_config(decoder=True).vocab_size),
            "inputs": ["input_ids", "attention_mask", *past_names], "outputs": ["logits", *present_names],
            "export_seconds": round(time.perf_counter() - t0, 3)}
    fileio.write_json(out_dir / META_FILE, meta)
    return out_dir


def _needs_external_data(model: Any) -> bool:
    """Weights over ~1.8 GB do not fit in one protobuf (2 GB limit): store them beside the graph."""
    return sum(p.numel() * p.element_size() for p in model.parameters()) > 1_800_000_000


def cached_kv_onnx(model: Any, cache_dir: str | os.PathLike | None = None,
                   precision: str = "fp32") -> tuple[Path, bool]:
    """The folder of `model`'s KV-cache ONNX export, exporting it on a cache miss.

    Returns ``(folder, exported_now)``. Keyed by :func:`model_content_hash`; written to a temp
    folder in the cache and renamed into place (atomic on one filesystem). ``precision="int8"``:
    the fp32 graph quantized (:func:`quantize_int8`), cached beside it under its own key.
    """
    if check_precision(precision) == "int8":
        return _cached_int8(model, cache_dir)
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LTSError(f"cannot create the ONNX cache folder {root}: {exc.strerror or exc}") from None
    final = root / model_content_hash(model)

    def build(tmp: Path) -> None:
        log.info("writing %s as ONNX with a KV cache (once; cached in %s)", type(model).__name__, final)
        if direct_arch(model) is not None:
            write_direct_onnx(model, tmp)  # the search's own graph: milliseconds, no exporter
        else:
            export_kv_onnx(model, tmp)

    return final, _build_once(final, build, f"ONNX export of {type(model).__name__}", "use --backend torch")


def _build_once(final: Path, build: Callable[[Path], Any], what: str, way_out: str) -> bool:
    """Make the cache folder `final` with ``build(tmp)`` unless a complete one is there; True when built now.

    Built in a temp folder beside it and renamed into place (META_FILE is inside: the folder is
    complete or absent); a stale incomplete folder (an older crash) is replaced; if another process
    finishes the same folder first, theirs is kept. Whatever `build` raises that is not an LTSError
    becomes one line: "`what` failed (...); `way_out`".
    """
    if (final / META_FILE).is_file() and (final / MODEL_FILE).is_file():
        return False
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)
    with fileio.atomic_dir(final, replace=False) as tmp:
        try:
            build(tmp)
        except LTSError:
            raise
        except Exception as exc:  # exporters and quantizers fail in many ways; the user needs the gist
            raise LTSError(f"{what} failed ({type(exc).__name__}: {first_line(exc)[:300]}); {way_out}") from None
    return True


def quantize_int8(fp32_dir: Path, out_dir: Path) -> None:
    """The fp32 graph with int8 weights (:func:`lts.cost.quantize.quantize_model`, as the search measures
    with ``--precision int8``); meta.json says so."""
    if any(p.suffix != ".json" and p.name != MODEL_FILE for p in fp32_dir.iterdir()):
        raise LTSError("--precision int8: models whose weights are stored outside the graph (over ~1.8 GB) are "
                       "not supported yet; use fp32")
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    done = quantize_model(fp32_dir / MODEL_FILE, out_dir / MODEL_FILE)
    meta = json.loads((fp32_dir / META_FILE).read_text(encoding="utf-8"))
    meta.update(precision="int8", quantization=done, quantize_seconds=round(time.perf_counter() - t0, 3),
                versions={**meta.get("versions", {}), **versions("int8")})  # the copy's key: its source's and int8
    fileio.write_json(out_dir / META_FILE, meta)


def _cached_int8(model: Any, cache_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    import onnxruntime

    fp32, exported = cached_kv_onnx(model, cache_dir)
    # Named after its fp32 folder (readers find one from the other), keyed by it, the quantizer's version and ORT's.
    final = fp32.with_name(f"{fp32.name}-int8-"
                           f"{cache_key('int8', source=fp32.name, onnxruntime=onnxruntime.__version__)}")
    built = _build_once(final, lambda tmp: quantize_int8(fp32, tmp), "INT8 quantization", "use --precision fp32")
    return final, built or exported


class OnnxKVModel:
    """An ONNX Runtime session over a KV-cache export, with a decode loop like ``generate``'s."""

    def __init__(self, folder: str | os.PathLike, target: Target) -> None:
        folder = Path(folder)
        self.meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        # the allocator rule the search's peaks were measured under (lts.core.procs.fix_mmap_threshold): this
        # process then holds what the search said it would, whatever it loaded before (tokenizer, torch)
        procs.fix_mmap_threshold()
        self.session = target.session(folder / MODEL_FILE)  # the same session set-up the search measures with
        self.target = target
        self.threads = target.threads
        self.layout = [tuple(x) for x in self.meta["kv_layout"]]
        self.past_names = self.meta["inputs"][2:]

    def empty_past(self, batch: int) -> list[np.ndarray]:
        past = []
        for heads, head_dim in self.layout:
            past += [np.zeros((batch, heads, 0, head_dim), np.float32),
                     np.zeros((batch, heads, 0, head_dim), np.float32)]
        return past

    def forward(self, input_ids: np.ndarray, past: Sequence[np.ndarray],
                attention_mask: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """input_ids (B, S) int64, past (B, H, P, D) ... and the mask (B, P+S), all ones when None
        -> logits (B, V), presents (B, H, P+S, D) ..."""
        if attention_mask is None:
            attention_mask = np.ones((input_ids.shape[0], past[0].shape[2] + input_ids.shape[1]), np.int64)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        feed.update(zip(self.past_names, past))
        logits, *presents = self.session.run(None, feed)
        return logits, presents

    def generate(self, input_ids: Any, max_new_tokens: int, logits_processor: Callable[[Any, Any], Any],
                 do_sample: bool, eos_token_id: int | Sequence[int] | None, pad_token_id: int | None,
                 streamer: Any = None, attention_mask: Any = None) -> Any:
        """Decode like transformers' ``generate`` (greedy or multinomial sampling), returning (B, S+T) ids.

        Same semantics, so the same seed gives the same tokens: `logits_processor` is applied to
        float32 torch scores, sampling draws with ``torch.multinomial`` from torch's global RNG,
        a sequence that emitted an eos gets `pad_token_id` afterwards, and decoding stops when
        every sequence has finished or after `max_new_tokens`. `streamer` gets ``put``/``end``
        calls like generate's (the prompt first, then each new token). `attention_mask` (B, S),
        0 over left padding, lets prompts of different lengths share the batch (None: no padding).
        """
        import torch

        prompt = torch.as_tensor(input_ids, dtype=torch.long)
        batch, width = prompt.shape
        eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        if eos and pad_token_id is None:
            pad_token_id = eos[0]
        unfinished = np.ones(batch, bool)
        if streamer is not None:
            streamer.put(prompt.clone())
        # Every id and mask column the run can need, allocated once; each step reads a prefix of them.
        ids = np.empty((batch, width + max_new_tokens), np.int64)
        ids[:, :width] = prompt.numpy()
        mask = np.ones((batch, width + max_new_tokens), np.int64)
        if attention_mask is not None:
            given = np.asarray(attention_mask)
            if given.shape != (batch, width):
                raise LTSError(f"attention_mask has shape {given.shape}, the prompts {(batch, width)}")
            mask[:, :width] = given
        # Greedy with no logits processor (the benchmarks', a plain --greedy): the argmax in numpy, no torch per step.
        plain = not do_sample and isinstance(logits_processor, list) and not logits_processor
        feed_ids, past = ids[:, :width], self.empty_past(batch)
        for _ in range(max_new_tokens):
            logits, past = self.forward(np.ascontiguousarray(feed_ids), past, np.ascontiguousarray(mask[:, :width]))
            if plain:
                next_tokens = logits.argmax(-1)
            else:
                scores = logits_processor(torch.from_numpy(ids[:, :width]), torch.from_numpy(logits).float())
                if do_sample:
                    probs = torch.nn.functional.softmax(scores, dim=-1)
                    next_tokens = torch.multinomial(probs, num_samples=1).squeeze(1).numpy()
                else:
                    next_tokens = torch.argmax(scores, dim=-1).numpy()
            if eos:
                next_tokens = np.where(unfinished, next_tokens, pad_token_id)
            ids[:, width] = next_tokens
            width += 1
            if streamer is not None:
                streamer.put(torch.from_numpy(ids[:, width - 1].copy()))
            if eos:
                unfinished &= ~np.isin(next_tokens, eos)
                if not unfinished.any():
                    break
            feed_ids = ids[:, width - 1:width]
        if streamer is not None:
            streamer.end()
        return torch.from_numpy(np.ascontiguousarray(ids[:, :width]))
