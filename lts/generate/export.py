"""``lts export``: a folder a user ships without LTS, holding what ``generate_text.py --backend onnx`` runs.

    lts export models/trained/gpt2_xxx --out dist/my-model
    lts export gpt2 --precision int8 --out dist/gpt2-int8

The folder: ``model.onnx`` (the generation graph with a KV cache, the one ``generate_text.py --backend onnx``
decodes with: for a GPT-2, the very graph the search measured; weights beside it in ``model.onnx.data`` when
the graph is too large for one protobuf), ``meta.json`` (its inputs, outputs and cache layout), the tokenizer
files, ``generation_config.json`` and a README with the graph's interface and a dozen lines of plain
``onnxruntime`` + ``tokenizers`` that generate with it (tests/generate/test_export.py runs those very lines).
The graph comes from the ONNX cache ``generate_text.py`` fills (made now when it is not there). Written to a
temp folder and renamed into place: an interrupted export leaves no half folder, and an existing non-empty
``--out`` is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lts.core import fileio
from lts.core.cli import ArgumentParser
from lts.core.errors import LTSError
from lts.core.settings import Boolean, Optional, Settings, Text, borrow, setting
from lts.cost.target import TargetSettings
from lts.generate.decode import GenerateSettings, context_length, load_model_and_tokenizer
from lts.generate.onnx_kv import META_FILE, MODEL_FILE, cached_kv_onnx, direct_arch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportSettings(Settings):
    """What to export, where, at which precision."""

    model: str = borrow(GenerateSettings, "model")
    out: str = setting("", "the folder to write (required; refused when it exists and is not empty, unless --force)",
                       Text(), metavar="DIR")
    tokenizer: str | None = setting(None, "hub id or folder with the tokenizer files (none: the model's own)",
                                    Optional(Text(nonempty=True)))
    precision: str = borrow(TargetSettings, "precision", help="fp32, or int8: the weight matrices quantized "
                            "(ONNX Runtime dynamic quantization, as generate_text.py --precision int8 runs)")
    force: bool = setting(False, "replace a non-empty --out", Boolean())
    trust_remote_code: bool = borrow(GenerateSettings, "trust_remote_code")
    onnx_cache_dir: str | None = borrow(GenerateSettings, "onnx_cache_dir")

    def check(self) -> None:
        if not self.out.strip():
            raise LTSError("no --out DIR given: the folder to write the model into")


SETTINGS = ExportSettings  # every setting, declared once (lts.core.settings)

README = """# {name}

Exported by LTS (`lts export`, {precision}): a causal language model as one ONNX graph with a KV cache,
run with plain ONNX Runtime. Built by: {builder}.{contrib}

| file | what |
| --- | --- |
| `{model_file}` | the graph{data} |
| `meta.json` | its inputs, outputs and cache layout (below) |
| `tokenizer.json` and the other tokenizer files | the tokenizer (`tokenizers` or transformers' `AutoTokenizer`) |
| `generation_config.json` | the model's generation settings (eos/bos ids) |
| `genai_config.json` | {genai_row} |

## The graph

One graph serves both phases of generation: the prompt with an empty cache (P = 0), then one token at a
time with the cache the step before returned.

- inputs: `input_ids` (B, S) int64; `attention_mask` (B, P+S) int64 (1 = a real token, 0 = left padding);
  `past_key_i`, `past_value_i` (B, H_i, P, D_i) float32 for each layer i < {n_layers}
- outputs: `logits` ({logits_shape}) float32, the next-token scores of the last position only;
  `present_key_i`, `present_value_i` (B, H_i, P+S, D_i) float32: the cache to pass back
- cache layout (H_i, D_i) per layer: {layout}

## Generate with it (numpy, onnxruntime, tokenizers)

```python
{code}```
{genai}"""

GENAI = """
## Or with onnxruntime-genai

`pip install onnxruntime-genai`, then (greedy, the settings in `genai_config.json`):

```python
import onnxruntime_genai as og
model = og.Model(".")
tokenizer = og.Tokenizer(model)
params = og.GeneratorParams(model)
params.set_search_options(max_length=64)
generator = og.Generator(model, params)
generator.append_tokens(tokenizer.encode("The future of AI"))
while not generator.is_done():
    generator.generate_next_token()
print(tokenizer.decode(generator.get_sequence(0)))
```
"""

CODE = """import json, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
tok, meta = Tokenizer.from_file("tokenizer.json"), json.load(open("meta.json"))
sess = ort.InferenceSession("model.onnx")
ids = np.array([tok.encode("The future of AI").ids], np.int64)
shapes = [(1, h, 0, d) for h, d in meta["kv_layout"] for _ in ("key", "value")]
past = {name: np.zeros(shape, np.float32) for name, shape in zip(meta["inputs"][2:], shapes)}
new = []
for _ in range(20):  # greedy: the most likely token each step
    mask = np.ones((1, ids.shape[1] + next(iter(past.values())).shape[2]), np.int64)
    logits, *presents = sess.run(None, {"input_ids": ids, "attention_mask": mask, **past})
    ids, past = logits.reshape(len(ids), -1).argmax(-1)[:, None], dict(zip(past, presents))
    new.append(int(ids[0, 0]))
print(tok.decode(new))
"""


def genai_config(meta: dict[str, Any], config: Any, data: list[str]) -> tuple[dict[str, Any] | None, str]:
    """(onnxruntime-genai's ``genai_config.json`` for the graph, "") or (None, why it cannot run it).

    genai's generic ``decoder`` model with the graph's own tensor names; its cache does not share past and
    present buffers (the graph concatenates them). It wants one head count and head size for every layer and
    3-D logits (:func:`with_sequence_axis` gives them).
    """
    layout = {tuple(pair) for pair in meta["kv_layout"]}
    if len(layout) != 1:
        return None, "onnxruntime-genai takes one head count and head size for every layer, and this model's differ"
    if data:
        return None, "the graph keeps its weights in a separate file (over 2 GB); not rewritten for onnxruntime-genai"
    n = meta["n_layers"]
    if meta["inputs"][2:] != [f"past_{kv}_{i}" for i in range(n) for kv in ("key", "value")]:
        return None, "the exported graph's cache inputs are not named past_key_i / past_value_i"
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    if eos is None:
        return None, "the model has no eos_token_id"
    (heads, head_size), = layout
    context = context_length(config) or 1024
    return {"model": {
        "type": "decoder", "bos_token_id": config.bos_token_id if config.bos_token_id is not None else eos,
        "eos_token_id": eos, "pad_token_id": config.pad_token_id if config.pad_token_id is not None else eos,
        "vocab_size": meta.get("vocab_size") or config.vocab_size, "context_length": context,
        "decoder": {
            "filename": MODEL_FILE, "head_size": head_size, "hidden_size": heads * head_size,
            "num_attention_heads": heads, "num_key_value_heads": heads, "num_hidden_layers": n,
            "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
            "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                       "past_key_names": "past_key_%d", "past_value_names": "past_value_%d"},
            "outputs": {"logits": "logits", "present_key_names": "present_key_%d",
                        "present_value_names": "present_value_%d"}}},
        "search": {"do_sample": False, "max_length": context, "min_length": 0, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": False, "repetition_penalty": 1.0,
                   "temperature": 1.0, "top_k": 1, "top_p": 1.0}}, ""


def with_sequence_axis(model: Any) -> None:
    """Give the graph's ``logits`` output a sequence axis of 1, (B, 1, V), the shape onnxruntime-genai reads
    (one Unsqueeze after the LM head; nothing else changes). `model`: the ModelProto, changed in place."""
    import onnx
    from onnx import TensorProto, helper

    g = model.graph
    (logits,) = [o for o in g.output if o.name == "logits"]
    inner, axis = "logits_of_last_position", "logits_sequence_axis"
    for node in g.node:
        node.output[:] = [inner if name == "logits" else name for name in node.output]
    g.initializer.append(helper.make_tensor(axis, TensorProto.INT64, [1], [1]))
    g.node.append(helper.make_node("Unsqueeze", [inner, axis], ["logits"], name="logits_with_sequence_axis"))
    batch, vocab = (d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim)
    where = list(g.output).index(logits)
    g.output.remove(logits)
    g.output.insert(where, helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 1, vocab]))
    onnx.checker.check_model(model)


def check_out(out: Path, force: bool) -> None:
    """One line when `out` cannot be written: a file, or a non-empty folder without --force."""
    if out.exists() and not out.is_dir():
        raise LTSError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise LTSError(f"--out {out} exists and is not empty: choose another folder or pass --force to replace it")


def export(settings: ExportSettings) -> Path:
    """Write the folder (see the module docstring); its path."""
    import onnx
    from transformers import GenerationConfig

    out = Path(settings.out).expanduser()
    check_out(out, settings.force)
    model, tokenizer, _ = load_model_and_tokenizer(settings)
    if not getattr(tokenizer, "is_fast", False):
        raise LTSError(f"the tokenizer of {settings.tokenizer or settings.model} has no fast (tokenizer.json) form: "
                       "the exported folder is read with the `tokenizers` library, which needs one")
    builder = ("LTS's own generation graph (the one the search measures)" if direct_arch(model) is not None
               else "torch.onnx.export of the transformers model")
    log.info("graph: %s", builder)
    folder, _ = cached_kv_onnx(model, settings.onnx_cache_dir, precision=settings.precision)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    with fileio.atomic_dir(out, replace=True) as tmp:
        for item in folder.iterdir():  # the graph, its external data when it has some, meta.json
            shutil.copy2(item, tmp / item.name)
        tokenizer.save_pretrained(tmp)
        GenerationConfig.from_model_config(model.config).save_pretrained(tmp)
        data = [p.name for p in folder.iterdir() if p.name not in (MODEL_FILE, META_FILE)]
        graph = onnx.load(str(tmp / MODEL_FILE), load_external_data=False)  # loaded once: read, maybe changed
        contrib = contrib_ops(graph)
        genai, why_not = genai_config(meta, model.config, data)
        if genai is not None:
            with_sequence_axis(graph)  # genai's configs are written only for graphs without external data
            onnx.save(graph, str(tmp / MODEL_FILE))
            fileio.write_json(tmp / "genai_config.json", genai)
        else:
            log.info("no genai_config.json: %s", why_not)
        layout = ", ".join(f"({h}, {d})" for h, d in meta["kv_layout"])
        vocab = meta.get("vocab_size", "V")
        (tmp / "README.md").write_text(README.format(
            name=out.name, precision=settings.precision, builder=builder, model_file=MODEL_FILE,
            contrib=f"\nIt uses ONNX Runtime's own fused operators ({', '.join(contrib)}, domain `com.microsoft`), "
            "so it runs on ONNX Runtime (any of its execution providers that has them), not on other ONNX runtimes."
            if contrib else "",
            data=f" (weights in {', '.join(f'`{d}`' for d in data)})" if data else "", n_layers=meta["n_layers"],
            logits_shape=f"B, 1, {vocab}" if genai else f"B, {vocab}", layout=layout, code=CODE,
            genai_row="onnxruntime-genai's settings for this graph (below)" if genai else
            f"not written: {why_not}", genai=GENAI if genai else ""), encoding="utf-8")
    return out


def contrib_ops(model: Any) -> list[str]:
    """The ONNX Runtime contrib operators (domain ``com.microsoft``) the ModelProto `model` uses, sorted."""
    from lts.core.onnxgraph import MS_DOMAIN

    return sorted({node.op_type for node in model.graph.node if node.domain == MS_DOMAIN})


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(prog=prog or "lts export", description="Write a folder a user ships without LTS: the "
                            "ONNX generation graph, tokenizer files, generation_config.json and a README with "
                            "plain onnxruntime code that generates with it.", settings=ExportSettings,
                            preset="export")
    args: argparse.Namespace = parser.parse_args(argv)
    settings = parser.settings_from(args)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    out = export(settings)
    files = sorted(p.name for p in out.iterdir())
    print(f"wrote {out}: {', '.join(files)}", file=sys.stdout)
    return 0
