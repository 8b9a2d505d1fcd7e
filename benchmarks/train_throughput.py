#!/usr/bin/env python
"""Training tokens/s: train.py's loop (lts.train.train_loop) vs a plain transformers Trainer.

Same model (GPT2LMHeadModel, same init), same batch, seq_len, optimiser settings (AdamW
0.9/0.95, wd 0.1, cosine with warm-up, clip 1.0), same torch threads, same data (windows of
the offline corpus), dropout 0 in both. Each step's start is timestamped (a wrapper around
the batch source for train_loop, a TrainerCallback for Trainer); tokens/s = batch*seq_len /
median step time (from step start to next step start) after --warmup-steps steps. Runs
alternate (ours, Trainer, ours, ...) so a noisy neighbour hurts both alike; the table gives
the median over --repeats.

    python -m benchmarks.train_throughput                      # defaults below, 1 thread
    python -m benchmarks.train_throughput --threads 2 --steps 30
    python -m benchmarks.train_throughput --layouts            # train.py itself: processes, threads, compile

``--layouts`` runs train.py through its command line on the same cores, same global batch,
same token shards (tokenized once), interleaved: 1 process x 2 threads, 2 processes x 1
thread (torchrun, gloo, each half the batch), and 1 process x 2 threads with --compile.
tokens/s = global batch x seq_len / median step time after the first 3 steps (so compiling
is not counted; it is reported apart as the first steps' extra time).

Needs ``accelerate`` (transformers' Trainer requires it): pip install accelerate
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from benchmarks._cli import add_json_flag
from benchmarks._models import arch_from_spec
from benchmarks._results import write_result
from lts.families.gpt2 import ArchConfig
from lts.train import TrainSettings, build_model_config, train_loop
from lts.train.data import Batches, eval_windows, load_default_corpus, tokenize_stream
from lts.train.tokenizer import train_bpe_tokenizer

REPO = Path(__file__).resolve().parent.parent


class TimedBatches:
    """Wraps lts.train.data.Batches; records when each step asks for its batch (= when the step starts)."""

    def __init__(self, batches: Batches) -> None:
        self.inner, self.starts = batches, []

    def batch(self, step: int) -> Any:
        self.starts.append(time.perf_counter())
        return self.inner.batch(step)

    def epochs(self, steps: int) -> float:
        return self.inner.epochs(steps)


def steady_tokens_per_s(starts: list[float], tokens_per_step: int, warmup: int) -> float:
    """From step start times: median duration of steps warmup .. n-2 (the last step's end is not timed, in
    both). The median, not the mean: a neighbour's burst on a shared machine hits single steps."""
    t = starts[warmup:]
    return tokens_per_step / statistics.median(b - a for a, b in zip(t, t[1:]))


def run_ours(model: Any, batches: Batches, val: Any, settings: TrainSettings, warmup: int) -> float:
    timed = TimedBatches(batches)
    train_loop(model, timed, val, settings, log=lambda s: None)
    return steady_tokens_per_s(timed.starts, settings.batch_size * settings.seq_len, warmup)


def run_trainer(model: Any, batches: Batches, settings: TrainSettings, warmup: int, out_dir: str) -> float:
    class Windows(torch.utils.data.Dataset):
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int) -> dict:  # the same windows, in the same order, as our loop's steps
            step, row = divmod(i, settings.batch_size)
            w = torch.from_numpy(batches.batch(step)[row])
            return {"input_ids": w[:-1], "labels": w[:-1]}

    starts: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            starts.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=out_dir, per_device_train_batch_size=settings.batch_size, max_steps=settings.max_steps,
        learning_rate=settings.lr, lr_scheduler_type="cosine", warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay, adam_beta1=settings.beta1, adam_beta2=settings.beta2,
        max_grad_norm=settings.grad_clip, logging_strategy="no", save_strategy="no", eval_strategy="no",
        report_to="none", use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=settings.seed,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Windows(settings.max_steps * settings.batch_size),
                      callbacks=[Clock()])
    with contextlib.redirect_stdout(io.StringIO()):  # Trainer prints its own summary dict
        trainer.train()
    return steady_tokens_per_s(starts, settings.batch_size * settings.seq_len, warmup)


LAYOUTS = (  # name, processes (1: plain python, else torchrun), threads per process, extra flags
    ("1 process x 2 threads", 1, 2, ()),
    ("2 processes x 1 thread (torchrun, gloo)", 2, 1, ()),
    ("1 process x 2 threads, --compile", 1, 2, ("--compile",)),
)


def train_py(args: argparse.Namespace, work: Path, spec: str, out: Path, layout: tuple) -> dict[str, Any]:
    """One train.py run of architecture `spec` in `layout` (a row of LAYOUTS); its train_metrics.json (SystemExit
    with train.py's error when it fails)."""
    name, procs, threads, flags = layout
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
              if procs > 1 else [sys.executable])
    cmd = [*launch, str(REPO / "train.py"), str(work / spec), "--corpus", args.corpus, "--tokenizer",
           str(work / "tok"), "--shards", str(work / "shards"), "--max-steps", str(args.steps),
           "--batch-size", str(args.batch_size // procs), "--seq-len", str(args.seq_len),
           "--eval-every", str(args.steps), "--eval-windows", "2", "--save-every", str(10 ** 6),
           "--dropout", "0", "--threads", str(threads), "--device", "cpu", "--no-progress",
           "--out", str(out), *flags]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: failed\n{proc.stderr[-2000:]}")
    return json.loads((out / "train_metrics.json").read_text())


def measure_layouts(args: argparse.Namespace) -> list[tuple[ArchConfig, dict[str, list], dict[str, list]]]:
    """Per architecture: every layout's tokens/s and its time beyond the steady steps, --repeats interleaved runs."""
    work = Path(tempfile.mkdtemp(prefix="lts-layouts-"))
    corpus = load_default_corpus(args.corpus)
    train_bpe_tokenizer(corpus.train, vocab_size=args.vocab).save_pretrained(work / "tok")
    measured = []
    for spec in args.archs.split(";"):
        arch = arch_from_spec(spec)
        arch.to_hf_config().save_pretrained(work / spec)
        results: dict[str, list[float]] = {name: [] for name, *_ in LAYOUTS}
        extra: dict[str, list[float]] = {name: [] for name, *_ in LAYOUTS}
        for r in range(args.repeats):
            for layout in LAYOUTS:
                name, procs, _, flags = layout
                out = work / f"out-{len(measured)}-{r}-{procs}-{len(flags)}"
                m = train_py(args, work, spec, out, layout)
                results[name].append(m["steady_tokens_per_s"])
                steady_s = m["global_batch"] * args.seq_len / m["steady_tokens_per_s"]
                extra[name].append(m["train_time_s"] - m["steps"] * steady_s)  # time beyond steady steps
                print(f"{spec} repeat {r + 1}: {name}: {results[name][-1]:,.0f} tok/s", flush=True)
        measured.append((arch, results, extra))
    return measured


def layout_rows(measured: list[tuple[ArchConfig, dict[str, list], dict[str, list]]]) -> list[dict[str, Any]]:
    """The layouts' table, printed, and its rows."""
    print("\n| model (n_layer, n_embd, n_inner, n_head) | layout | tokens/s | vs 1 x 2 threads | time beyond steady "
          "steps (s) | runs |\n|---|---|---:|---:|---:|---|")
    rows = []
    for arch, results, extra in measured:
        base = statistics.median(results[LAYOUTS[0][0]])
        for name, *_ in LAYOUTS:
            v = statistics.median(results[name])
            print(f"| {arch.n_layer}, {arch.n_embd}, {arch.n_inner}, {arch.n_head} | {name} | {v:,.0f} | "
                  f"{v / base:.2f} | {statistics.median(extra[name]):.1f} | "
                  f"{', '.join(f'{x:,.0f}' for x in results[name])} |")
            rows.append({"model (n_layer, n_embd, n_inner, n_head)":
                         f"{arch.n_layer}, {arch.n_embd}, {arch.n_inner}, {arch.n_head}", "layout": name,
                         "tokens_per_s": round(v, 1), "vs 1 x 2 threads": round(v / base, 3),
                         "time beyond steady steps (s)": round(statistics.median(extra[name]), 2),
                         "runs": [round(x, 1) for x in results[name]]})
    return rows


def layouts(args: argparse.Namespace) -> int:
    """train.py's own tokens/s for each layout of processes, threads and compilation (see the module doc)."""
    measured = measure_layouts(args)
    print(f"\ntrain.py on {args.corpus} (BPE {args.vocab}, shards), global batch {args.batch_size} x seq "
          f"{args.seq_len}, {args.steps} steps per run, tokens/s from the median step after the first 3, median of "
          f"{args.repeats} interleaved runs; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, load avg {os.getloadavg()[0]:.1f}")
    write_result("train_layouts", conditions={
        "corpus": args.corpus, "bpe_vocab": args.vocab, "global_batch": args.batch_size, "seq_len": args.seq_len,
        "steps": args.steps, "repeats": args.repeats, "dropout": 0, "tokens_per_s": "median step after the first 3",
    }, rows=layout_rows(measured), threads=None, path=args.json)
    return 0


def measure_loops(args: argparse.Namespace) -> tuple[list[tuple[ArchConfig, list[float], list[float]]], int]:
    """Per architecture: train.py's loop's and Trainer's tokens/s, --repeats alternating runs; and the vocabulary."""
    corpus = load_default_corpus(args.corpus)
    tok = train_bpe_tokenizer(corpus.train, vocab_size=args.vocab)
    batches = Batches(tokenize_stream(tok, corpus.train), args.seq_len, args.batch_size, seed=0)
    val = eval_windows(tokenize_stream(tok, corpus.validation), args.seq_len, args.batch_size)
    settings = TrainSettings(max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                             warmup_steps=2, eval_every=10**9, dropout=0.0, progress=False)
    measured = []
    for spec in args.archs.split(";"):
        arch = arch_from_spec(spec, vocab_size=len(tok))
        with tempfile.TemporaryDirectory() as tmp:
            arch.to_hf_config().save_pretrained(tmp)
            config = build_model_config(Path(tmp), arch, len(tok), tok.eos_token_id, 0.0)

        def fresh(config: Any = config) -> GPT2LMHeadModel:
            torch.manual_seed(0)
            return GPT2LMHeadModel(config)

        ours, theirs = [], []
        with tempfile.TemporaryDirectory() as out_dir:
            for r in range(args.repeats):
                ours.append(run_ours(fresh(), batches, val, settings, args.warmup_steps))
                theirs.append(run_trainer(fresh(), batches, settings, args.warmup_steps, out_dir))
                print(f"{spec} repeat {r + 1}: train.py loop {ours[-1]:,.0f} tok/s, Trainer {theirs[-1]:,.0f} tok/s",
                      flush=True)
        measured.append((arch, ours, theirs))
    return measured, len(tok)


def loop_rows(measured: list[tuple[ArchConfig, list[float], list[float]]]) -> list[dict[str, Any]]:
    """The loops' table, printed, and its rows."""
    print("\n| model (n_layer, n_embd, n_inner, n_head) | non-emb params | train.py tokens/s | Trainer tokens/s "
          "| ratio | runs (train.py / Trainer) |\n|---|---:|---:|---:|---:|---|")
    rows = []
    for arch, ours, theirs in measured:
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"| {arch.n_layer}, {arch.n_embd}, {arch.n_inner}, {arch.n_head} | {arch.non_embedding_params():,} | "
              f"{a:,.0f} | {b:,.0f} | {a / b:.3f} | {', '.join(f'{v:,.0f}' for v in ours)} / "
              f"{', '.join(f'{v:,.0f}' for v in theirs)} |")
        rows.append({"model (n_layer, n_embd, n_inner, n_head)":
                     f"{arch.n_layer}, {arch.n_embd}, {arch.n_inner}, {arch.n_head}",
                     "non-emb params": arch.non_embedding_params(), "train.py tokens_per_s": round(a, 1),
                     "Trainer tokens_per_s": round(b, 1), "ratio": round(a / b, 3),
                     "runs train.py": [round(v, 1) for v in ours], "runs Trainer": [round(v, 1) for v in theirs]})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layouts", action="store_true", help="train.py's layouts: processes x threads, --compile")
    p.add_argument("--archs", default="1,64,128,2;2,128,512,4;4,256,1024,4", help="n_layer,n_embd,n_inner,n_head;...")
    p.add_argument("--vocab", type=int, default=8192, help="BPE vocab trained on the corpus")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup-steps", type=int, default=2, help="steps not timed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--corpus", default="pydoc", choices=("pydoc", "shakespeare", "auto"))
    add_json_flag(p, "train_throughput", "; with --layouts train_layouts.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.layouts:
        return layouts(args)
    if importlib.util.find_spec("accelerate") is None:  # an optional extra (bench) that Trainer needs
        print("train_throughput: error: transformers' Trainer needs 'accelerate': pip install accelerate",
              file=sys.stderr)
        return 2
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    measured, vocab = measure_loops(args)
    print(f"\nbatch {args.batch_size} x seq {args.seq_len}, vocab {vocab} (BPE on {args.corpus}); "
          f"{args.threads} thread(s); {args.steps} steps per run, first {args.warmup_steps} not timed, tokens/s from "
          f"the median step time; median of {args.repeats} alternating runs; {platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"load avg {os.getloadavg()[0]:.1f}")
    write_result("train_throughput", conditions={
        "corpus": args.corpus, "vocab": vocab, "batch": args.batch_size, "seq_len": args.seq_len,
        "steps": args.steps, "untimed_steps": args.warmup_steps, "repeats": args.repeats, "dropout": 0,
    }, rows=loop_rows(measured), threads=args.threads, extra_versions=("accelerate",), path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
