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

--family llama asks the same question of the Llama family (lts.families.llama), on a fixed design instead of a
draw: 16 tied-embedding Llamas (head_dim 16, intermediate 3 x hidden, the trained BPE vocab) in 4 groups at equal
non-embedding parameter counts (~0.43M, ~0.64M, ~1.7M, ~2.6M). Each group is 2 x 2: deep-thin (4x the layers at
half the width) vs shallow-wide, each with all KV heads (multi-head) and with 1 (multi-query, ~12-14% fewer
parameters), so that the proxy's ranking inside a group is a near-tie and training decides. It reports
Spearman(non-embedding params, -val loss) over all shapes, the top-quartile agreement (the share of the proxy's
top quarter that is in training's top quarter), and per group whether the deeper shape beat the wider one and
whether one KV head cost loss, with the loss differences, beside GPT-2's figures from the committed
benchmarks/results/proxy_validation.json; it writes benchmarks/results/proxy_validation_llama.json (--n-archs,
--min-params, --max-params and --pick-seed do not apply to it)::

    python -m benchmarks.proxy_validation --family llama --steps 200 --seeds 0,1   # ~39 min on 2 busy cores
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
from benchmarks._results import RESULTS_DIR, write_result
from benchmarks._stats import spearman
from lts.core.fileio import write_json
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.families.gpt2 import ArchConfig
from lts.families.gpt2.space import SearchSpace
from lts.families.llama import LlamaArch
from lts.train import TrainSettings, build_model_config, train_loop
from lts.train.data import Batches, eval_windows, load_default_corpus, tokenize_stream
from lts.train.tokenizer import train_bpe_tokenizer

# torch, transformers and matplotlib are imported inside the functions that use them: see "Measuring children" in
# benchmarks/__init__.py (the latency is measured by lts's evaluator).
REPO = Path(__file__).resolve().parent.parent
CONDITIONS = ("steps", "batch_size", "seq_len", "vocab", "lr", "warmup_steps", "eval_windows", "corpus", "pick_seed",
              "threads")  # the flags a saved run must share to be reused
GPT2_RESULT = RESULTS_DIR / "proxy_validation.json"  # GPT-2's committed figures, shown beside Llama's

# --family llama: groups of equal non-embedding parameters, each (deep-thin, shallow-wide) as (layers, hidden): 4x the
# layers at half the width holds a layer's parameters x 1/4, so a pair ties to within 0.1%; each shape is trained
# with all KV heads and with one.
LLAMA_GROUPS = (((8, 64), (2, 128)), ((12, 64), (3, 128)), ((8, 128), (2, 256)), ((12, 128), (3, 256)))
LLAMA_HEAD_DIM = 16
LLAMA_FFN_RATIO = 3  # intermediate_size = 3 x hidden_size


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


@dataclass(frozen=True)
class LlamaShape:
    """One shape of the --family llama design: its group (0-based, by parameter count), its place in the group."""

    group: int
    depth: str  # "deep-thin" or "shallow-wide"
    kv: str  # "all KV" or "1 KV"
    arch: LlamaArch


def llama_design(vocab: int) -> list[LlamaShape]:
    """The --family llama shapes (:data:`LLAMA_GROUPS`), tied embeddings at the trained `vocab`."""
    out = []
    for g, pair in enumerate(LLAMA_GROUPS):
        for depth, (layers, hidden) in zip(("deep-thin", "shallow-wide"), pair):
            heads = hidden // LLAMA_HEAD_DIM
            for kv_label, kv in (("all KV", heads), ("1 KV", 1)):
                out.append(LlamaShape(g, depth, kv_label, LlamaArch(
                    hidden_size=hidden, num_hidden_layers=layers, intermediate_size=LLAMA_FFN_RATIO * hidden,
                    num_attention_heads=heads, num_key_value_heads=kv, head_dim=LLAMA_HEAD_DIM,
                    tie_word_embeddings=True, vocab_size=vocab)))
    return out


def describe(arch: ArchConfig | LlamaArch) -> str:
    """The shape in one short phrase for the progress lines."""
    if isinstance(arch, LlamaArch):
        return (f"L{arch.num_hidden_layers} d{arch.hidden_size} f{arch.intermediate_size} h{arch.num_attention_heads} "
                f"kv{arch.num_key_value_heads}")
    return f"L{arch.n_layer} d{arch.n_embd} f{arch.n_inner} h{arch.n_head}"


def new_model(arch: ArchConfig | LlamaArch, config: Any) -> Any:
    """A freshly initialised model of `config` (the torch seed set by the caller): GPT2LMHeadModel for a GPT-2 as
    before, the family's own class (transformers' Auto class) for any other."""
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel

    return GPT2LMHeadModel(config) if isinstance(arch, ArchConfig) else AutoModelForCausalLM.from_config(config)


def torch_latency_s(arch: ArchConfig | LlamaArch, seq_len: int, threads: int, repeats: int = 5) -> float:
    """Median time of one torch forward, batch 1, seq_len tokens, next-token logits only (logits_to_keep=1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = new_model(arch, arch.to_hf_config()).eval()
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


def lts_latency_s(arch: ArchConfig | LlamaArch, seq_len: int, threads: int, cache: Path) -> float | None:
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
    p.add_argument("--family", choices=("gpt2", "llama"), default="gpt2",
                   help="gpt2: N architectures drawn from the default space; llama: the fixed design of 16 shapes in "
                        "4 equal-parameter groups (see above)")
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
    p.add_argument("--latency", choices=("auto", "lts", "torch", "none"), default="auto",
                   help="auto: lts.cost.evaluator's onnx_latency_s if available, else torch forward time; "
                        "none: not measured (--family llama only)")
    p.add_argument("--latency-seq-len", type=int, default=1024)
    p.add_argument("--remeasure-latency", action="store_true",
                   help="drop the saved latencies and measure them again (e.g. on a quiet machine); no retraining")
    p.add_argument("--results", default=None,
                   help="the runs saved as they finish, for resuming (default <tmp>/lts_proxy_validation.json, "
                        "lts_proxy_validation_llama.json with --family llama)")
    p.add_argument("--plot", default=None,
                   help="the figure (default assets/proxy_validation.png; with --family llama none unless given)")
    add_json_flag(p, "proxy_validation", "; proxy_validation_llama.json with --family llama")
    args = p.parse_args(argv)
    if args.latency == "none" and args.family != "llama":
        p.error("--latency none is for --family llama only (GPT-2's table and plot show the latency)")
    llama = args.family == "llama"
    if args.results is None:
        args.results = os.path.join(tempfile.gettempdir(),
                                    "lts_proxy_validation_llama.json" if llama else "lts_proxy_validation.json")
    if args.plot is None and not llama:
        args.plot = str(REPO / "assets" / "proxy_validation.png")
    return args


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


def prepare_data(args: argparse.Namespace, seeds: list[int], archs: list[ArchConfig] | list[LlamaArch]) -> Data:
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


def train_one(arch: ArchConfig | LlamaArch, seed: int, data: Data, args: argparse.Namespace,
              tmpdir: Path) -> dict[str, Any]:
    """Train `arch` at `seed` on the budget: its final and best validation figures, time and history."""
    import torch

    settings = TrainSettings(max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                             warmup_steps=args.warmup_steps, eval_every=max(1, args.steps // 3),
                             eval_windows=args.eval_windows, seed=seed, dropout=0.0, progress=False)
    batches = Batches(data.train_tokens, args.seq_len, args.batch_size, seed)
    vocab = len(data.tok)
    arch_dir = tmpdir / arch.archid
    arch.to_hf_config().save_pretrained(arch_dir)
    config = build_model_config(arch_dir, arch, vocab, data.tok.eos_token_id, 0.0)
    torch.manual_seed(seed)
    model = new_model(arch, config)
    assert sum(p.numel() for p in model.parameters()) == dataclasses.replace(arch, vocab_size=vocab).total_params()
    m = train_loop(model, batches, data.val, settings, log=lambda s: None, desc=f"{arch.archid}@{seed}")
    return {"final_val_loss": m["final_val_loss"], "final_val_ppl": m["final_val_ppl"],
            "best_val_ppl": m["best_val_ppl"], "train_time_s": m["train_time_s"],
            "tokens_per_s": m["tokens_per_s"], "history": m["history"]}


def latency_of(arch: ArchConfig | LlamaArch, args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    """``{"latency_s", "measure"}``: the evaluator's latency (--latency lts or auto), else torch's forward time
    (None with --latency none)."""
    if args.latency == "none":
        return {"latency_s": None, "measure": "none"}
    if args.latency in ("auto", "lts"):
        lat = lts_latency_s(arch, args.latency_seq_len, args.latency_threads, cache)
        if lat is not None:
            return {"latency_s": lat, "measure": "lts"}
    return {"latency_s": torch_latency_s(arch, args.latency_seq_len, args.latency_threads), "measure": "torch"}


def measure(args: argparse.Namespace, archs: list[ArchConfig] | list[LlamaArch], seeds: list[int],
            saved: dict[str, Any], results_path: Path, data: Data, t0: float) -> None:
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
                latency = (f"{lat['latency_s'] * 1e3:.1f} ms [{lat['measure']}]" if lat["latency_s"] is not None
                           else "not measured")
                print(f"[seed {seed}, {i}/{len(archs)}] {arch.archid} {describe(arch)}: "
                      f"{arch.non_embedding_params():,} non-emb, val ppl {run['final_val_ppl']:.2f}, "
                      f"{run['train_time_s']:.0f} s ({run['tokens_per_s']:,.0f} tok/s), latency "
                      f"{latency}  (elapsed {time.perf_counter() - t0:.0f} s)", flush=True)


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


# ---- --family llama


def top_quartile(proxy: list[float], loss: list[float]) -> tuple[float, int]:
    """(the share of the proxy's top quarter, most of it first, that is in training's top quarter, lowest loss first;
    the quarter's size, n / 4 rounded, at least 1)."""
    k = max(1, round(len(proxy) / 4))
    by_proxy = set(sorted(range(len(proxy)), key=lambda i: -proxy[i])[:k])
    by_loss = set(sorted(range(len(loss)), key=lambda i: loss[i])[:k])
    return len(by_proxy & by_loss) / k, k


def gpt2_reference(path: Path = GPT2_RESULT) -> dict[str, Any]:
    """GPT-2's committed figures: its Spearman as its summary holds it, its top-quartile agreement computed from its
    rows, and what it was run with; {} when the file is absent."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    rows = data.get("rows") or []
    agreement, k = top_quartile([r["non-emb params"] for r in rows], [r["val loss (mean)"] for r in rows])
    c = data.get("conditions") or {}
    return {"spearman": (data.get("summary") or {}).get("Spearman rho(non_embedding_params, -val ppl)"),
            "spearman_from_rows": spearman([r["non-emb params"] for r in rows], [-r["val loss (mean)"] for r in rows]),
            "top_quartile": agreement, "k": k, "archs": len(rows), "seeds": c.get("seeds"), "steps": c.get("steps"),
            "tokens": c.get("tokens_per_model"),
            "params_range": f"{min(r['non-emb params'] for r in rows):,}-{max(r['non-emb params'] for r in rows):,}"
            if rows else None, "date": data.get("date"), "command": data.get("command")}


def shape_name(sh: LlamaShape) -> str:
    a = sh.arch
    return f"{sh.depth} {sh.kv} (L{a.num_hidden_layers} d{a.hidden_size} h{a.num_attention_heads} " \
           f"kv{a.num_key_value_heads})"


@dataclass
class LlamaFigures:
    shapes: list[LlamaShape]
    loss: list[float]  # mean over seeds
    seed_loss: dict[int, list[float]]
    train_s: list[float]
    latency_s: list[float | None]
    latency_name: str
    rhos: dict[str, float]
    seed_rhos: dict[int, float]
    top_quartile: float
    k: int
    slope: float  # val loss per doubling of non-embedding params, least squares over every shape
    comparisons: list[dict[str, Any]]
    group_params: list[int]  # per group, its all-KV shapes' mean non-embedding params


def llama_figures(shapes: list[LlamaShape], seeds: list[int], saved: dict[str, Any], vocab: int,
                  tie_tolerance: float = 0.01) -> LlamaFigures:
    """The correlations, the top-quartile agreement and, inside each group, deep-thin vs shallow-wide (at each KV
    choice) and 1 KV head vs all (at each depth): loss differences (A - B, mean and per seed), which one the proxy
    prefers (more non-embedding params; a tie within `tie_tolerance`) and which one training does (lower loss)."""
    archs = [sh.arch for sh in shapes]
    seed_loss = {s: [saved["runs"][f"{a.archid}@{s}"]["final_val_loss"] for a in archs] for s in seeds}
    loss = [float(np.mean([seed_loss[s][i] for s in seeds])) for i in range(len(archs))]
    train_s = [sum(saved["runs"][f"{a.archid}@{s}"]["train_time_s"] for s in seeds) for a in archs]
    lats = [saved["latency"][a.archid] for a in archs]
    measures = {lat["measure"] for lat in lats}
    latency_name = ("not measured" if measures == {"none"} else "onnx_latency_s (lts.cost.evaluator)"
                    if measures == {"lts"} else "torch forward latency" if measures == {"torch"}
                    else "latency (mixed measures!)")
    latency_s = [lat["latency_s"] for lat in lats]
    neg = [-x for x in loss]
    params = [a.non_embedding_params() for a in archs]
    rhos = {"non_embedding_params": spearman(params, neg),
            f"total_params (trained vocab {vocab})": spearman([dataclasses.replace(a, vocab_size=vocab).total_params()
                                                               for a in archs], neg)}
    if None not in latency_s:
        rhos[latency_name] = spearman(latency_s, neg)
    seed_rhos = {s: spearman(params, [-x for x in v]) for s, v in seed_loss.items()}
    agreement, k = top_quartile(params, loss)
    slope = float(np.polyfit(np.log2(params), loss, 1)[0])
    index = {(sh.group, sh.depth, sh.kv): i for i, sh in enumerate(shapes)}
    groups = sorted({sh.group for sh in shapes})
    group_params = [round(np.mean([params[index[(g, d, "all KV")]] for d in ("deep-thin", "shallow-wide")]))
                    for g in groups]
    comparisons = []
    for g in groups:
        pairs = [("depth", kv, index[(g, "deep-thin", kv)], index[(g, "shallow-wide", kv)])
                 for kv in ("all KV", "1 KV")]
        pairs += [("KV heads", d, index[(g, d, "1 KV")], index[(g, d, "all KV")])
                  for d in ("deep-thin", "shallow-wide")]
        for what, at, i, j in pairs:
            ratio = params[i] / params[j]
            proxy = "tie" if abs(ratio - 1) <= tie_tolerance else "A" if ratio > 1 else "B"
            delta = loss[i] - loss[j]
            per_seed = [seed_loss[s][i] - seed_loss[s][j] for s in seeds]
            trained = "A" if delta < 0 else "B"
            comparisons.append({
                "group": g, "what": what, "at": at, "A": shapes[i], "B": shapes[j], "param_ratio": ratio,
                "proxy": proxy, "delta": delta, "per_seed": per_seed, "trained": trained,
                "every_seed": all(np.sign(d) == np.sign(delta) for d in per_seed),
                "misranked": proxy not in ("tie", trained),
                # the ratio of non-embedding params that the fitted slope says A's loss difference is worth
                "equivalent_ratio": 2 ** (delta / slope) if slope < 0 else None})
    return LlamaFigures(shapes, loss, seed_loss, train_s, latency_s, latency_name, rhos, seed_rhos, agreement, k,
                        slope, comparisons, group_params)


def llama_summary(f: LlamaFigures, seeds: list[int], gpt2: dict[str, Any]) -> dict[str, Any]:
    """The single figures: Llama's correlations and agreement beside GPT-2's, and what the groups say."""
    depth = [c for c in f.comparisons if c["what"] == "depth"]
    kv = [c for c in f.comparisons if c["what"] == "KV heads"]
    out: dict[str, Any] = {
        "Llama Spearman rho(non_embedding_params, -val loss)": round(f.rhos["non_embedding_params"], 3),
        "GPT-2 Spearman rho(non_embedding_params, -val ppl) (committed)": gpt2.get("spearman"),
        f"Llama top-quartile agreement (top {f.k} of {len(f.shapes)})": round(f.top_quartile, 3),
        f"GPT-2 top-quartile agreement (top {gpt2.get('k')} of {gpt2.get('archs')}, from its committed rows)":
            None if not gpt2 else round(gpt2["top_quartile"], 3),
    }
    for name, rho in f.rhos.items():
        if name != "non_embedding_params":
            out[f"Llama Spearman rho({name}, -val loss)"] = round(rho, 3)
    if len(seeds) > 1:
        out.update({f"Llama Spearman rho(non_embedding_params, -val loss), seed {s} alone": round(rho, 3)
                    for s, rho in f.seed_rhos.items()})
    out["val loss per doubling of non-embedding params (least squares, all shapes)"] = round(f.slope, 4)

    def geomean(values: list[float | None]) -> float | None:
        return None if None in values else round(float(np.exp(np.mean(np.log(values)))), 3)

    out["deep-thin beat shallow-wide (pairs)"] = f"{sum(c['trained'] == 'A' for c in depth)} of {len(depth)}"
    out["depth pairs: the proxy prefers deep-thin / ties (within 1%) / prefers shallow-wide"] = "/".join(
        str(sum(c["proxy"] == side for c in depth)) for side in ("A", "tie", "B"))
    out["mean val loss, deep-thin - shallow-wide"] = round(float(np.mean([c["delta"] for c in depth])), 4)
    out["val loss, deep-thin - shallow-wide, range over pairs"] = (f"{min(c['delta'] for c in depth):+.4f} to "
                                                                   f"{max(c['delta'] for c in depth):+.4f}")
    out["non-embedding params, deep-thin / shallow-wide (geometric mean)"] = geomean([c["param_ratio"]
                                                                                       for c in depth])
    out["loss-equivalent params, deep-thin / shallow-wide (geometric mean, by the slope)"] = geomean(
        [c["equivalent_ratio"] for c in depth])
    out["1 KV head cost loss (pairs)"] = f"{sum(c['delta'] > 0 for c in kv)} of {len(kv)}"
    out["KV pairs the proxy misranks (1 KV trained to the lower loss)"] = f"{sum(c['misranked'] for c in kv)} of " \
                                                                          f"{len(kv)}"
    out["mean val loss, 1 KV - all KV"] = round(float(np.mean([c["delta"] for c in kv])), 4)
    out["val loss, 1 KV - all KV, range over pairs"] = (f"{min(c['delta'] for c in kv):+.4f} to "
                                                        f"{max(c['delta'] for c in kv):+.4f}")
    out["non-embedding params, 1 KV / all KV (geometric mean)"] = geomean([c["param_ratio"] for c in kv])
    out["loss-equivalent params, 1 KV / all KV (geometric mean, by the slope)"] = geomean(
        [c["equivalent_ratio"] for c in kv])
    out["pairs the proxy misranks (it prefers one by >1% params, training the other)"] = (
        f"{sum(c['misranked'] for c in f.comparisons)} of {sum(c['proxy'] != 'tie' for c in f.comparisons)}")
    if len(seeds) > 1:
        out["pairs whose sign held on every seed"] = (f"{sum(c['every_seed'] for c in f.comparisons)} of "
                                                      f"{len(f.comparisons)}")
        spread = [max(f.seed_loss[s][i] for s in seeds) - min(f.seed_loss[s][i] for s in seeds)
                  for i in range(len(f.shapes))]
        out["seed spread of a shape's val loss (max - min over seeds), mean over shapes"] = round(
            float(np.mean(spread)), 4)
    return out


def llama_rows(f: LlamaFigures, seeds: list[int], vocab: int, gpt2: dict[str, Any], steps: int,
               budget: int) -> list[dict[str, Any]]:
    """The JSON result's rows: the shapes, the within-group pairs, and Llama beside GPT-2."""
    rows: list[dict[str, Any]] = []
    for i, sh in enumerate(f.shapes):
        a = sh.arch
        rows.append({"table": "shapes", "group": f"~{f.group_params[sh.group] / 1e6:.2f}M",
                     "shape": f"{sh.depth}, {sh.kv}", "archid": a.archid, "layers": a.num_hidden_layers,
                     "hidden": a.hidden_size, "ffn": a.intermediate_size, "heads": a.num_attention_heads,
                     "kv heads": a.num_key_value_heads, "non-emb params": a.non_embedding_params(),
                     f"total params (vocab {vocab})": dataclasses.replace(a, vocab_size=vocab).total_params(),
                     "latency ms": None if f.latency_s[i] is None else round(f.latency_s[i] * 1e3, 2),
                     "val loss (mean)": round(f.loss[i], 4), "val ppl (mean)": round(math.exp(f.loss[i]), 2),
                     **{f"loss seed {s}": round(f.seed_loss[s][i], 4) for s in seeds},
                     "train s": round(f.train_s[i], 1)})
    for c in f.comparisons:
        rows.append({"table": "within-group pairs (A - B; negative: A trained to the lower loss)",
                     "group": f"~{f.group_params[c['group']] / 1e6:.2f}M", "pair": f"{c['what']} at {c['at']}",
                     "A": shape_name(c["A"]), "B": shape_name(c["B"]),
                     "params A/B": round(c["param_ratio"], 4), "proxy prefers": c["proxy"],
                     "val loss A - B": round(c["delta"], 4),
                     **({f"seed {s}": round(d, 4) for s, d in zip(seeds, c["per_seed"])} if len(seeds) > 1 else {}),
                     **({"same sign every seed": c["every_seed"]} if len(seeds) > 1 else {}),
                     "training prefers": c["trained"], "proxy misranks": c["misranked"],
                     "loss-equivalent params A/B": None if c["equivalent_ratio"] is None
                     else round(c["equivalent_ratio"], 3)})
    params = [sh.arch.non_embedding_params() for sh in f.shapes]
    beside = [("Spearman rho(non-embedding params, -val loss)", round(f.rhos["non_embedding_params"], 3),
               gpt2.get("spearman")),
              ("top-quartile agreement", round(f.top_quartile, 3),
               None if not gpt2 else round(gpt2["top_quartile"], 3)),
              ("quarter / architectures", f"{f.k} / {len(f.shapes)}",
               f"{gpt2['k']} / {gpt2['archs']}" if gpt2 else None),
              ("architectures", "fixed design: equal-parameter groups", "drawn log-evenly from the default space"),
              ("non-embedding params", f"{min(params):,}-{max(params):,}", gpt2.get("params_range")),
              ("seeds", ",".join(map(str, seeds)), ",".join(map(str, gpt2.get("seeds") or [])) or None),
              ("steps / tokens per model", f"{steps} / {budget:,}",
               f"{gpt2.get('steps')} / {gpt2.get('tokens'):,}" if gpt2 else None)]
    for name, llama, other in beside:
        rows.append({"table": "Llama beside GPT-2 (GPT-2: benchmarks/results/proxy_validation.json)",
                     "figure": name, "Llama": llama, "GPT-2": other})
    return rows


def print_llama(f: LlamaFigures, seeds: list[int], vocab: int, gpt2: dict[str, Any], summary: dict[str, Any],
                args: argparse.Namespace, budget: int, wall_s: float) -> None:
    import torch  # for its version

    print(f"\n| group | shape | archid | non-emb params | total params (vocab {vocab}) | latency ms | val loss |"
          + "".join(f" loss seed {s} |" for s in seeds) + " train s |")
    print("|---|---|---|" + "---:|" * (5 + len(seeds)))
    for i, sh in enumerate(f.shapes):
        a = sh.arch
        lat = "—" if f.latency_s[i] is None else f"{f.latency_s[i] * 1e3:.1f}"
        print(f"| ~{f.group_params[sh.group] / 1e6:.2f}M | {shape_name(sh)} | {a.archid} | "
              f"{a.non_embedding_params():,} | {dataclasses.replace(a, vocab_size=vocab).total_params():,} | {lat} | "
              f"{f.loss[i]:.4f} |" + "".join(f" {f.seed_loss[s][i]:.4f} |" for s in seeds) + f" {f.train_s[i]:.0f} |")
    print("\n| group | pair | A | B | params A/B | proxy prefers | val loss A - B |"
          + ("".join(f" seed {s} |" for s in seeds) if len(seeds) > 1 else "")
          + " training prefers | proxy misranks | loss-equivalent params A/B |")
    print("|---|---|---|---|---:|---|---:|" + ("---:|" * len(seeds) if len(seeds) > 1 else "") + "---|---|---:|")
    for c in f.comparisons:
        eq = "—" if c["equivalent_ratio"] is None else f"{c['equivalent_ratio']:.3f}"
        print(f"| ~{f.group_params[c['group']] / 1e6:.2f}M | {c['what']} at {c['at']} | {shape_name(c['A'])} | "
              f"{shape_name(c['B'])} | {c['param_ratio']:.4f} | {c['proxy']} | {c['delta']:+.4f} |"
              + ("".join(f" {d:+.4f} |" for d in c["per_seed"]) if len(seeds) > 1 else "")
              + f" {c['trained']} | {'yes' if c['misranked'] else 'no'} | {eq} |")
    print("\n| figure | Llama / value | GPT-2 (committed) |\n|---|---:|---:|")
    print(f"| Spearman rho(non-embedding params, -val loss) | {f.rhos['non_embedding_params']:.3f} | "
          f"{gpt2.get('spearman')} |")
    print(f"| top-quartile agreement | {f.top_quartile:.3f} (top {f.k} of {len(f.shapes)}) | "
          + (f"{gpt2['top_quartile']:.3f} (top {gpt2['k']} of {gpt2['archs']}) |" if gpt2 else "— |"))
    for name, value in summary.items():
        if not name.startswith(("Llama Spearman rho(non_embedding_params, -val loss)", "GPT-2", "Llama top-")) \
                or "seed" in name:
            print(f"| {name} | {value} | |")
    if gpt2:
        print(f"\nGPT-2: {gpt2['archs']} archs drawn from its default space, {gpt2['steps']} steps, seeds "
              f"{gpt2['seeds']}, {gpt2['date']} ({gpt2['command']}); its Spearman recomputed from its rows "
              f"on val loss: {gpt2['spearman_from_rows']:.3f}")
    print(f"\n{len(f.shapes)} Llama shapes x {len(seeds)} seed(s), {budget:,} tokens each; training time "
          f"{sum(f.train_s) / 60:.1f} min; wall {wall_s / 60:.1f} min this invocation; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")


def plot_llama(f: LlamaFigures, path: str, title: str) -> None:
    """Validation loss against non-embedding params, one colour per group, one marker per shape."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    markers = {("deep-thin", "all KV"): "o", ("deep-thin", "1 KV"): "s", ("shallow-wide", "all KV"): "^",
               ("shallow-wide", "1 KV"): "v"}
    for key, marker in markers.items():
        idx = [i for i, sh in enumerate(f.shapes) if (sh.depth, sh.kv) == key]
        ax.scatter([f.shapes[i].arch.non_embedding_params() for i in idx], [f.loss[i] for i in idx],
                   c=[f.shapes[i].group for i in idx], cmap="viridis", vmin=0, vmax=len(f.group_params) - 1,
                   marker=marker, s=50, label=", ".join(key))
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(f"Spearman rho = {f.rhos['non_embedding_params']:.3f}, top-quartile agreement "
                 f"{f.top_quartile:.2f}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main_llama(args: argparse.Namespace, seeds: list[int]) -> int:
    """--family llama: train the design, compare with the proxy, write proxy_validation_llama.json."""
    conditions = {"family": "llama", **{k: getattr(args, k) for k in CONDITIONS if k != "pick_seed"}}
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    shapes = llama_design(args.vocab)
    results_path = Path(args.results)
    saved = load_saved(results_path, conditions, args.remeasure_latency)
    t0 = time.perf_counter()
    data = prepare_data(args, seeds, sorted((sh.arch for sh in shapes), key=LlamaArch.non_embedding_params))
    vocab = len(data.tok)
    if vocab != args.vocab:  # the shapes are built at the vocabulary the tokenizer really has
        shapes = [dataclasses.replace(sh, arch=dataclasses.replace(sh.arch, vocab_size=vocab)) for sh in shapes]
    measure(args, [sh.arch for sh in shapes], seeds, saved, results_path, data, t0)
    f = llama_figures(shapes, seeds, saved, vocab)
    gpt2 = gpt2_reference()
    summary = llama_summary(f, seeds, gpt2)
    print_llama(f, seeds, vocab, gpt2, summary, args, data.budget, time.perf_counter() - t0)
    rows = llama_rows(f, seeds, vocab, gpt2, args.steps, data.budget)
    write_result("proxy_validation_llama", conditions={
        "family": "llama", "shapes": len(shapes),
        "design": f"{len(LLAMA_GROUPS)} groups of equal non-embedding params x (deep-thin, shallow-wide: 4x the "
                  f"layers at half the width) x (all KV heads, 1 KV head); groups (layers x hidden): "
                  + "; ".join(f"{a[0]}x{a[1]} vs {b[0]}x{b[1]}" for a, b in LLAMA_GROUPS),
        "head_dim": LLAMA_HEAD_DIM, "intermediate": f"{LLAMA_FFN_RATIO} x hidden", "tied_embeddings": True,
        "corpus": args.corpus, "bpe_vocab": vocab, "steps": args.steps, "batch": args.batch_size,
        "seq_len": args.seq_len, "tokens_per_model": data.budget, "lr": args.lr, "warmup_steps": args.warmup_steps,
        "dropout": 0, "seeds": seeds, "validation_windows": int(data.val.shape[0]),
        "latency": f.latency_name if args.latency != "none" else "skipped (--latency none)",
        "latency_seq_len": args.latency_seq_len if args.latency != "none" else None,
        "latency_threads": args.latency_threads if args.latency != "none" else None,
        "proxy_prefers": "the shape with more non-embedding params; a tie within 1%",
        "loss_equivalent_params": "2 ** ((loss A - loss B) / slope), slope: val loss per doubling of non-embedding "
                                  "params fitted over all shapes",
        "gpt2_reference": f"{rel(GPT2_RESULT)} ({gpt2.get('date')})" if gpt2 else "absent",
        # what the machine ran besides: latencies measured by this invocation share it (losses do not depend on it)
        "load_average_1min_start_end": [None if load_start is None else round(load_start, 2),
                                        round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None],
    }, rows=rows, summary=summary, threads=args.threads, path=args.json)
    if args.plot:
        plot_llama(f, args.plot, f"{len(shapes)} Llama shapes x {len(seeds)} seed(s), {data.budget:,} tokens each, "
                                 f"{args.corpus} (vocab {vocab}, seq {args.seq_len}, {args.steps} steps)")
        print(f"wrote {args.plot}")
    print(f"wrote {results_path}")
    return 0


def rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(v) for v in args.seeds.split(",")]
    if args.family == "llama":
        return main_llama(args, seeds)
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
