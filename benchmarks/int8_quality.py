#!/usr/bin/env python
"""What INT8 weights cost in quality: validation perplexity and greedy tokens, fp32 vs ``--precision int8``.

Beside LTS's int8 graph (7-bit weights, ``lts.cost.quantize.QUANTIZATION``) it runs the same graph quantized with
full 8-bit weights (``reduce_range=False``), the choice LTS does not make: on a CPU without VNNI (AVX2 only) its
u8 x s8 sums saturate; the machine record names the CPU's instruction sets (``isa``).

    python -m benchmarks.int8_quality trained/gpt2_xxx            # a train.py output folder
    python -m benchmarks.int8_quality --train 4,256,1024,4 --steps 600   # train one here first (minutes)

Both graphs are the ones ``generate_text.py --backend onnx`` runs (``--precision fp32|int8``).
Perplexity is teacher-forced through the KV-cache graph (one step per token, the next token's
logits each time), over the model's validation windows: the validation split train.py held out
of its corpus (the offline corpus by default), ``--windows`` windows of ``--seq-len`` tokens.
Greedy agreement: ``--new-tokens`` tokens from each of a few prompts, the share of positions
where INT8 picks fp32's token (positions after the first difference count too, so it is a
strict measure).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from transformers import LogitsProcessorList

from benchmarks._cli import add_json_flag, add_threads_flag
from benchmarks._models import arch_from_spec
from benchmarks._results import write_result
from lts.core.hub import load_causal_lm, load_tokenizer
from lts.cost.quantize import quantize_model
from lts.cost.target import CPUTarget
from lts.generate import GenerateSettings, TimingStreamer, generate_onnx
from lts.generate.onnx_kv import OnnxKVModel, cached_kv_onnx
from lts.train.data import eval_windows, load_default_corpus, tokenize_stream

REPO = Path(__file__).resolve().parent.parent
PROMPTS = ("ROMEO:", "The king", "What is the", "KING HENRY:\nNow", "My lord, I")
EIGHT_BIT = "int8, 8-bit weights"  # the variant LTS does not use (reduce_range=False)


def train(spec: str, steps: int, out: Path) -> None:
    """train.py on architecture `spec` ("n_layer,n_embd,n_inner,n_head") for `steps` steps, into `out`."""
    arch_dir = out.parent / "arch"
    arch_from_spec(spec).to_hf_config().save_pretrained(arch_dir)
    cmd = [sys.executable, str(REPO / "train.py"), str(arch_dir), "--out", str(out), "--max-steps", str(steps),
           "--batch-size", "8", "--seq-len", "128", "--eval-every", str(steps), "--warmup-steps", "50",
           "--tokenizer-vocab", "4096", "--lr", "2e-3", "--dropout", "0", "--no-progress"]
    print("#", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def perplexity(model: OnnxKVModel, windows: np.ndarray) -> float:
    """exp(mean next-token NLL), teacher-forced through the KV-cache graph, one token per step."""
    total, count = 0.0, 0
    for w in windows:
        past = model.empty_past(1)
        for t in range(len(w) - 1):
            logits, past = model.forward(w[None, t:t + 1].astype(np.int64), past)
            z = logits[0].astype(np.float64)
            total += -(z[w[t + 1]] - (z.max() + math.log(np.exp(z - z.max()).sum())))
            count += 1
    return math.exp(total / count)


@dataclass
class Quality:
    """Per precision: validation perplexity and greedy tokens/s per prompt; the greedy tokens int8 and fp32 share."""

    ppl: dict[str, float]
    speeds: dict[str, list[float]]
    agree: dict[str, int]  # per int8 variant
    total: int
    vocab: int
    windows: int


def measure(model_dir: Path, args: argparse.Namespace, work: Path) -> Quality:
    """Both graphs of the model in `model_dir`: perplexity over its validation windows, greedy tokens of PROMPTS."""
    model, tok = load_causal_lm(str(model_dir)), load_tokenizer(str(model_dir))
    corpus = load_default_corpus("auto")
    windows = eval_windows(tokenize_stream(tok, corpus.validation), args.seq_len, args.windows)
    target = CPUTarget(threads=args.threads)
    folders = {precision: cached_kv_onnx(model, work / "onnx", precision=precision)[0]
               for precision in ("fp32", "int8")}
    folders[EIGHT_BIT] = work / "int8-8bit"
    shutil.copytree(folders["int8"], folders[EIGHT_BIT])
    quantize_model(folders["fp32"] / "model.onnx", folders[EIGHT_BIT] / "model.onnx", reduce_range=False)
    graphs = {name: OnnxKVModel(folder, target) for name, folder in folders.items()}
    ppl = {name: perplexity(g, windows) for name, g in graphs.items()}
    settings = GenerateSettings(model="-", tokenizer="-", prompt="-", max_new_tokens=args.new_tokens, greedy=True)
    agree, total = {name: 0 for name in graphs if name != "fp32"}, 0
    speeds: dict[str, list[float]] = {name: [] for name in graphs}
    for prompt in PROMPTS:
        ids = torch.tensor([tok(prompt)["input_ids"]], dtype=torch.long)
        outs = {}
        for name, g in graphs.items():
            timing = TimingStreamer()
            outs[name] = generate_onnx(g, ids, settings, LogitsProcessorList(), None, None, timing)[0, ids.shape[1]:]
            speeds[name].append(args.new_tokens / (time.perf_counter() - timing.start))
        for name in agree:
            agree[name] += int((outs["fp32"] == outs[name]).sum())
        total += args.new_tokens
    return Quality(ppl, speeds, agree, total, len(tok), len(windows))


def rows(q: Quality) -> list[dict[str, Any]]:
    """The table, printed, and its rows: one per precision."""
    print("| precision | validation perplexity | vs fp32 | greedy tokens equal to fp32 "
          "| tokens/s (median of prompts) |")
    print("|---|---:|---:|---:|---:|")
    out = []
    for name in q.ppl:
        same = "—" if name == "fp32" else f"{q.agree[name]} of {q.total} ({q.agree[name] / q.total:.1%})"
        speed = sorted(q.speeds[name])[len(PROMPTS) // 2]
        print(f"| {name} | {q.ppl[name]:.3f} | {q.ppl[name] / q.ppl['fp32'] - 1:+.2%} | {same} | {speed:.0f} |")
        out.append({"precision": name, "validation perplexity": round(q.ppl[name], 3),
                    "vs fp32": f"{q.ppl[name] / q.ppl['fp32'] - 1:+.2%}", "greedy tokens equal to fp32": same,
                    "tokens/s (median of prompts)": round(speed, 1)})
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="a train.py output folder (model + tokenizer)")
    p.add_argument("--train", metavar="L,E,I,H",
                   help="train this architecture here first (n_layer,n_embd,n_inner,n_head)")
    p.add_argument("--steps", type=int, default=600, help="training steps with --train")
    p.add_argument("--windows", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    add_threads_flag(p, "ONNX Runtime intra-op threads and torch threads")
    add_json_flag(p, "int8_quality-<n_layer>x<n_embd>")
    args = p.parse_args(argv)
    if not args.model and not args.train:
        p.error("give a model folder or --train L,E,I,H")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lts-int8-"))
    t0 = time.perf_counter()
    model_dir = Path(args.model) if args.model else work / "trained"
    if args.train:
        train(args.train, args.steps, model_dir)
    train_s = time.perf_counter() - t0
    torch.set_num_threads(args.threads)
    q = measure(model_dir, args, work)
    info = model_dir / "train_metrics.json"
    metrics = json.loads(info.read_text()) if info.is_file() else {}
    print(f"\n# model {model_dir.name}: {metrics.get('n_layer')}x{metrics.get('n_embd')} (n_inner "
          f"{metrics.get('n_inner')}, n_head {metrics.get('n_head')}), vocab {q.vocab}, trained "
          f"{metrics.get('steps')} steps / {metrics.get('tokens_seen'):,} tokens on {metrics.get('corpus', '?')[:60]}"
          + (f" ({train_s:.0f} s here)" if args.train else ""))
    print(f"# validation: {q.windows} windows of {args.seq_len} tokens (teacher-forced through each graph); "
          f"greedy: {len(PROMPTS)} prompts x {args.new_tokens} tokens; {args.threads} threads; onnxruntime "
          f"{onnxruntime.__version__}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    shape = f"{metrics.get('n_layer')}x{metrics.get('n_embd')}"
    write_result(f"int8_quality-{shape}", conditions={
        "model": f"{shape} (n_inner {metrics.get('n_inner')}, n_head {metrics.get('n_head')})", "vocab": q.vocab,
        "trained_steps": metrics.get("steps"), "tokens_seen": metrics.get("tokens_seen"),
        "corpus": str(metrics.get("corpus", "?"))[:60], "train_s_here": round(train_s) if args.train else None,
        "validation": f"{q.windows} windows of {args.seq_len} tokens, teacher-forced through each graph",
        "greedy": f"{len(PROMPTS)} prompts x {args.new_tokens} tokens"},
        rows=rows(q), threads=args.threads, path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
