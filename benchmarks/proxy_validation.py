#!/usr/bin/env python
"""Does the training-free proxy rank architectures the way training does?

Trains N architectures drawn from the default search space (spread log-evenly over the
non-embedding-parameter range up to --max-params) on the same offline corpus, with the
same tokenizer, token budget, schedule and seed, then reports the Spearman rank
correlation between each cost/proxy column and validation perplexity:

    rho = spearman(proxy, -perplexity)   (+1: more of the proxy <=> lower perplexity, always)

for non-embedding params (the search's proxy), total params (at the space's vocab 50257,
and at the trained vocab) and latency. Prints a markdown table and writes
assets/proxy_validation.png. Results are saved per architecture as they finish
(--results), so a killed run resumes where it stopped.

    python -m benchmarks.proxy_validation                 # defaults: ~35 min on a busy 2-core machine
    python -m benchmarks.proxy_validation --n-archs 8 --steps 200   # quicker, noisier
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._cli import add_json_flag
from benchmarks._results import write_result
from benchmarks._stats import spearman
from lts.core.fileio import write_json
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.families.gpt2 import ArchConfig
from lts.families.gpt2.space import SearchSpace
from lts.train import TrainSettings, build_model_config, train_loop
from lts.train.data import Batches, eval_windows, load_default_corpus, tokenize_stream
from lts.train.tokenizer import train_bpe_tokenizer

# torch, transformers and matplotlib are imported inside the functions that use them: see "Measuring children" in
# benchmarks/__init__.py (the latency is measured by lts's evaluator).
REPO = Path(__file__).resolve().parent.parent
CONDITIONS = ("steps", "batch_size", "seq_len", "vocab", "lr", "warmup_steps", "eval_windows", "corpus", "pick_seed",
              "threads")  # the flags a saved run must share to be reused


def pick_archs(n: int, min_params: float, max_params: float, seed: int, pool: int = 4000) -> list[ArchConfig]:
    """n configs of the default space, nearest to log-evenly spaced non-embedding counts."""
    space = SearchSpace()
    rng = np.random.default_rng(seed)
    cands = {c.archid: c for c in (space.sample(rng) for _ in range(pool))}
    cands = sorted((c for c in cands.values() if min_params <= c.non_embedding_params() <= max_params),
                   key=ArchConfig.non_embedding_params)
    logs = np.log([c.non_embedding_params() for c in cands])
    picked: list[ArchConfig] = []
    for target in np.linspace(logs[0], logs[-1], n):
        order = np.argsort(np.abs(logs - target))
        picked.append(next(cands[i] for i in order if cands[i] not in picked))
    return sorted(picked, key=ArchConfig.non_embedding_params)


def torch_latency_s(arch: ArchConfig, seq_len: int, threads: int, repeats: int = 5) -> float:
    """Median time of one torch forward, batch 1, seq_len tokens, next-token logits only (logits_to_keep=1)."""
    import torch
    from transformers import GPT2LMHeadModel

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = GPT2LMHeadModel(arch.to_hf_config()).eval()
        x = torch.randint(0, arch.vocab_size, (1, seq_len))
        times = []
        with torch.no_grad():
            for i in range(2 + repeats):
                t0 = time.perf_counter()
                model(input_ids=x, use_cache=False, logits_to_keep=1)
                if i >= 2:
                    times.append(time.perf_counter() - t0)
        return float(np.median(times))
    finally:
        torch.set_num_threads(before)


def lts_latency_s(arch: ArchConfig, seq_len: int, threads: int, cache: Path) -> float | None:
    """onnx_latency_s from the project's evaluator (lts.cost.evaluator), or None if it failed here."""
    try:
        settings = EvalSettings.create(seq_len=seq_len, threads=threads)
        result = Evaluator(settings, cache_path=cache).evaluate(arch)
    except Exception as exc:  # fall back to torch's latency rather than lose a 30-minute run
        print(f"  lts.cost.evaluator failed ({type(exc).__name__}: {exc}); using torch latency", flush=True)
        return None
    return float(result.onnx_latency_s) if result.ok and result.onnx_latency_s is not None else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-archs", type=int, default=9)
    p.add_argument("--min-params", type=float, default=5e4, help="non-embedding params, lower end")
    p.add_argument("--max-params", type=float, default=4e6, help="non-embedding params, upper end (cost!)")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=4096, help="vocab of the BPE tokenizer trained on the training text")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=30)
    p.add_argument("--eval-windows", type=int, default=128)
    p.add_argument("--corpus", default="shakespeare", choices=("shakespeare", "pydoc", "auto"))
    p.add_argument("--threads", type=int, default=1,
                   help="training threads (1: on a shared 2-core machine, 2 OpenMP threads ran up to 6x slower)")
    p.add_argument("--latency-threads", type=int, default=2, help="threads for the latency measurement")
    p.add_argument("--seeds", default="0", help="training seeds (init, data order), comma-separated; "
                   "perplexity = exp(mean validation loss over seeds)")
    p.add_argument("--pick-seed", type=int, default=0, help="seed of the architecture draw")
    p.add_argument("--latency", choices=("auto", "lts", "torch"), default="auto",
                   help="auto: lts.cost.evaluator's onnx_latency_s if available, else torch forward time")
    p.add_argument("--latency-seq-len", type=int, default=1024)
    p.add_argument("--remeasure-latency", action="store_true",
                   help="drop the saved latencies and measure them again (e.g. on a quiet machine); no retraining")
    p.add_argument("--results", default=os.path.join(tempfile.gettempdir(), "lts_proxy_validation.json"))
    p.add_argument("--plot", default=str(REPO / "assets" / "proxy_validation.png"))
    add_json_flag(p, "proxy_validation")
    return p.parse_args(argv)


def load_saved(path: Path, conditions: dict[str, Any], remeasure_latency: bool) -> dict[str, Any]:
    """The runs and latencies saved at `path` by an earlier invocation under the same `conditions` (else none)."""
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if saved.get("conditions") != conditions:
        saved = {"conditions": conditions, "runs": {}, "latency": {}}
    saved.setdefault("latency", {})
    if remeasure_latency:  # forget the figures and the evaluator's cache of them
        saved["latency"] = {}
        path.with_suffix(".sqlite").unlink(missing_ok=True)
    return saved


@dataclass
class Data:
    """The tokenizer, the training tokens, the validation windows and the token budget per architecture."""

    tok: Any
    train_tokens: np.ndarray
    val: np.ndarray
    budget: int


def prepare_data(args: argparse.Namespace, seeds: list[int], archs: list[ArchConfig]) -> Data:
    """The corpus tokenized by a BPE trained on its training text, and the validation windows (printed)."""
    t0 = time.perf_counter()
    corpus = load_default_corpus(args.corpus)
    tok = train_bpe_tokenizer(corpus.train, vocab_size=args.vocab)
    train_tokens, val_tokens = tokenize_stream(tok, corpus.train), tokenize_stream(tok, corpus.validation)
    val = eval_windows(val_tokens, args.seq_len, args.eval_windows)
    budget = args.steps * args.batch_size * args.seq_len
    epochs = Batches(train_tokens, args.seq_len, args.batch_size, 0).epochs(args.steps)
    print(f"corpus: {corpus.name}")
    print(f"tokenizer: ByteLevel BPE, vocab {len(tok)}, trained on the training text; "
          f"{len(train_tokens):,} train / {len(val_tokens):,} validation tokens ({time.perf_counter() - t0:.0f} s)")
    print(f"budget per arch and seed: {args.steps} steps x {args.batch_size} x {args.seq_len} = {budget:,} tokens "
          f"({epochs:.2f} epochs), AdamW lr {args.lr:g} (0.9/0.95, wd 0.1, cosine, {args.warmup_steps} warm-up), "
          f"dropout 0, seeds {seeds}, {args.threads} threads; "
          f"validation: {val.shape[0]} x {args.seq_len} tokens of held-out plays")
    print(f"{len(archs)} architectures, {(archs[0]).non_embedding_params():,}-{(archs[-1]).non_embedding_params():,} "
          f"non-embedding params", flush=True)
    return Data(tok, train_tokens, val, budget)


def train_one(arch: ArchConfig, seed: int, data: Data, args: argparse.Namespace, tmpdir: Path) -> dict[str, Any]:
    """Train `arch` at `seed` on the budget: its final and best validation figures, time and history."""
    import torch
    from transformers import GPT2LMHeadModel

    settings = TrainSettings(max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                             warmup_steps=args.warmup_steps, eval_every=max(1, args.steps // 3),
                             eval_windows=args.eval_windows, seed=seed, dropout=0.0, progress=False)
    batches = Batches(data.train_tokens, args.seq_len, args.batch_size, seed)
    vocab = len(data.tok)
    arch_dir = tmpdir / arch.archid
    arch.to_hf_config().save_pretrained(arch_dir)
    config = build_model_config(arch_dir, arch, vocab, data.tok.eos_token_id, 0.0)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    assert sum(p.numel() for p in model.parameters()) == dataclasses.replace(arch, vocab_size=vocab).total_params()
    m = train_loop(model, batches, data.val, settings, log=lambda s: None, desc=f"{arch.archid}@{seed}")
    return {"final_val_loss": m["final_val_loss"], "final_val_ppl": m["final_val_ppl"],
            "best_val_ppl": m["best_val_ppl"], "train_time_s": m["train_time_s"],
            "tokens_per_s": m["tokens_per_s"], "history": m["history"]}


def latency_of(arch: ArchConfig, args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    """``{"latency_s", "measure"}``: the evaluator's latency (--latency lts or auto), else torch's forward time."""
    if args.latency in ("auto", "lts"):
        lat = lts_latency_s(arch, args.latency_seq_len, args.latency_threads, cache)
        if lat is not None:
            return {"latency_s": lat, "measure": "lts"}
    return {"latency_s": torch_latency_s(arch, args.latency_seq_len, args.latency_threads), "measure": "torch"}


def measure(args: argparse.Namespace, archs: list[ArchConfig], seeds: list[int], saved: dict[str, Any],
            results_path: Path, data: Data, t0: float) -> None:
    """Train every architecture at every seed and measure its latency, each saved the moment it is known; what
    `saved` holds already is not done again. `t0`: when this invocation started its work (for the elapsed time)."""
    with tempfile.TemporaryDirectory(prefix="lts_proxy_") as tmp:
        for seed in seeds:
            for i, arch in enumerate(archs, 1):
                key = f"{arch.archid}@{seed}"
                if key not in saved["runs"]:
                    saved["runs"][key] = train_one(arch, seed, data, args, Path(tmp))
                    write_json(results_path, saved)
                if arch.archid not in saved["latency"]:
                    saved["latency"][arch.archid] = latency_of(arch, args, results_path.with_suffix(".sqlite"))
                    write_json(results_path, saved)
                run, lat = saved["runs"][key], saved["latency"][arch.archid]
                print(f"[seed {seed}, {i}/{len(archs)}] {arch.archid} L{arch.n_layer} d{arch.n_embd} f{arch.n_inner} "
                      f"h{arch.n_head}: {arch.non_embedding_params():,} non-emb, val ppl {run['final_val_ppl']:.2f}, "
                      f"{run['train_time_s']:.0f} s ({run['tokens_per_s']:,.0f} tok/s), latency "
                      f"{lat['latency_s'] * 1e3:.1f} ms [{lat['measure']}]  (elapsed {time.perf_counter() - t0:.0f} s)",
                      flush=True)


@dataclass
class Figures:
    """Per architecture its seed-averaged figures, the columns compared with perplexity and their correlations."""

    rows: list[tuple[ArchConfig, dict[str, Any]]]
    cols: dict[str, list[float]]
    rhos: dict[str, float]
    per_seed: dict[int, list[float]]
    seed_rhos: dict[int, float]
    lat_name: str
    measures: set[str]

    @property
    def ppl(self) -> list[float]:
        return [r["final_val_ppl"] for _, r in self.rows]


def figures(archs: list[ArchConfig], seeds: list[int], saved: dict[str, Any], vocab: int) -> Figures:
    def mean_loss(a: ArchConfig) -> float:
        return float(np.mean([saved["runs"][f"{a.archid}@{s}"]["final_val_loss"] for s in seeds]))

    rows = [(a, {"final_val_loss": mean_loss(a), "final_val_ppl": math.exp(mean_loss(a)),
                 "train_time_s": sum(saved["runs"][f"{a.archid}@{s}"]["train_time_s"] for s in seeds),
                 "latency_s": saved["latency"][a.archid]["latency_s"],
                 "latency_measure": saved["latency"][a.archid]["measure"]}) for a in archs]
    ppl = [r["final_val_ppl"] for _, r in rows]
    measures = {r["latency_measure"] for _, r in rows}
    lat_name = ("onnx_latency_s (lts.cost.evaluator)" if measures == {"lts"} else
                "torch forward latency" if measures == {"torch"} else "latency (mixed measures!)")
    cols = {
        "non_embedding_params": [a.non_embedding_params() for a, _ in rows],
        "total_params (vocab 50257)": [a.total_params() for a, _ in rows],
        f"total_params (trained vocab {vocab})": [dataclasses.replace(a, vocab_size=vocab).total_params()
                                                  for a, _ in rows],
        lat_name: [r["latency_s"] for _, r in rows],
    }
    rhos = {name: spearman(v, [-x for x in ppl]) for name, v in cols.items()}
    per_seed = {s: [saved["runs"][f"{a.archid}@{s}"]["final_val_ppl"] for a in archs] for s in seeds}
    seed_rhos = {s: spearman(cols["non_embedding_params"], [-x for x in v]) for s, v in per_seed.items()}
    return Figures(rows, cols, rhos, per_seed, seed_rhos, lat_name, measures)


def print_tables(f: Figures, seeds: list[int], args: argparse.Namespace, budget: int, wall_s: float) -> None:
    import torch  # for its version

    print(f"\n| archid | n_layer | n_embd | n_inner | n_head | non-emb params | total params (50257) | "
          f"latency ms ({'ONNX, lts.cost.evaluator' if f.measures == {'lts'} else 'torch'}, b1, "
          f"seq {args.latency_seq_len}, "
          f"{args.latency_threads} thr) | val loss | val ppl |"
          + "".join(f" ppl seed {s} |" for s in seeds) + " train s |")
    print("|---|" + "---:|" * (9 + len(seeds)))
    for j, (a, r) in enumerate(f.rows):
        print(f"| {a.archid} | {a.n_layer} | {a.n_embd} | {a.n_inner} | {a.n_head} | {a.non_embedding_params():,} | "
              f"{a.total_params():,} | {r['latency_s'] * 1e3:.1f} | {r['final_val_loss']:.4f} | "
              f"{r['final_val_ppl']:.2f} |" + "".join(f" {f.per_seed[s][j]:.2f} |" for s in seeds)
              + f" {r['train_time_s']:.0f} |")
    print(f"\n| proxy | Spearman rho(proxy, -val ppl){' (ppl = exp mean loss over seeds)' if len(seeds) > 1 else ''} |"
          "\n|---|---:|")
    for name, rho in f.rhos.items():
        print(f"| {name} | {rho:.3f} |")
    if len(seeds) > 1:
        for s, rho in f.seed_rhos.items():
            print(f"| non_embedding_params, seed {s} alone | {rho:.3f} |")
    total_train = sum(r["train_time_s"] for _, r in f.rows)
    print(f"\n{len(f.rows)} archs x {len(seeds)} seed(s), {budget:,} tokens each; "
          f"training time {total_train / 60:.1f} min; "
          f"wall {wall_s / 60:.1f} min this invocation; "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}")


def result_rows(f: Figures, seeds: list[int]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The JSON result's rows (one per architecture) and summary (the correlations)."""
    rows = [{"archid": a.archid, "n_layer": a.n_layer, "n_embd": a.n_embd, "n_inner": a.n_inner,
             "n_head": a.n_head, "non-emb params": a.non_embedding_params(),
             "total params (vocab 50257)": a.total_params(), "latency ms": round(r["latency_s"] * 1e3, 2),
             "val loss (mean)": round(r["final_val_loss"], 4), "val ppl (mean)": round(r["final_val_ppl"], 2),
             **{f"ppl seed {s}": round(f.per_seed[s][j], 2) for s in seeds},
             "train s": round(r["train_time_s"], 1)} for j, (a, r) in enumerate(f.rows)]
    summary = {f"Spearman rho({name}, -val ppl)": round(rho, 3) for name, rho in f.rhos.items()}
    if len(seeds) > 1:
        summary.update({f"Spearman rho(non_embedding_params, -val ppl), seed {s} alone": round(rho, 3)
                        for s, rho in f.seed_rhos.items()})
    return rows, summary


def plot(f: Figures, seeds: list[int], args: argparse.Namespace, budget: int, vocab: int) -> None:
    """Perplexity against each proxy column, one panel each, to --plot."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator

    fig = Figure(figsize=(14, 4.2))
    axes = fig.subplots(1, 3, sharey=True)
    panels = [("non_embedding_params", "non-embedding parameters"),
              ("total_params (vocab 50257)", "total parameters (vocab 50257)"),
              (f.lat_name, f"latency, ms ({f.lat_name.split(' (')[0]}, batch 1, seq {args.latency_seq_len})")]

    def short(v: float, _pos: Any = None) -> str:
        return f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k"

    for ax, (col, label) in zip(axes, panels):
        x = np.asarray(f.cols[col], dtype=float) * (1e3 if col == f.lat_name else 1)
        ax.scatter(x, f.ppl, c=np.log(f.cols["non_embedding_params"]), cmap="viridis", s=40)
        if col != f.lat_name:  # parameter counts span decades; latency does not
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(short))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))
        ax.set_xlabel(label)
        ax.set_title(f"Spearman rho = {f.rhos[col]:.3f}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("validation perplexity")
    fig.suptitle(f"{len(f.rows)} GPT-2 archs x {len(seeds)} seed(s), {budget:,} tokens each, {args.corpus} "
                 f"(vocab {vocab}, seq {args.seq_len}, {args.steps} steps)", fontsize=10)
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(v) for v in args.seeds.split(",")]
    conditions = {k: getattr(args, k) for k in CONDITIONS}
    archs = pick_archs(args.n_archs, args.min_params, args.max_params, args.pick_seed)
    results_path = Path(args.results)
    saved = load_saved(results_path, conditions, args.remeasure_latency)
    t0 = time.perf_counter()
    data = prepare_data(args, seeds, archs)
    measure(args, archs, seeds, saved, results_path, data, t0)
    vocab = len(data.tok)
    f = figures(archs, seeds, saved, vocab)
    print_tables(f, seeds, args, data.budget, time.perf_counter() - t0)
    rows, summary = result_rows(f, seeds)
    write_result("proxy_validation", conditions={
        "archs": len(rows), "pick_seed": args.pick_seed, "params_range": f"{args.min_params:g}-{args.max_params:g}",
        "corpus": args.corpus, "bpe_vocab": vocab, "steps": args.steps, "batch": args.batch_size,
        "seq_len": args.seq_len, "tokens_per_model": data.budget, "lr": args.lr, "warmup_steps": args.warmup_steps,
        "dropout": 0, "seeds": seeds, "validation_windows": int(data.val.shape[0]), "latency": f.lat_name,
        "latency_seq_len": args.latency_seq_len, "latency_threads": args.latency_threads,
    }, rows=rows, summary=summary, threads=args.threads, path=args.json)
    plot(f, seeds, args, data.budget, vocab)
    print(f"wrote {args.plot} and {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
