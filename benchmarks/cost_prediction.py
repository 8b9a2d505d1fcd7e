#!/usr/bin/env python
"""How faithful predicted costs are: what a search predicts vs the whole graph measured, held-out architectures.

    python -m benchmarks.cost_prediction                       # 12 + 12 held out, 200 + 200 candidates, seed 1
    python -m benchmarks.cost_prediction --per-space 16 --candidates 400 --seq-len 256

In one session, on a fresh store, for search.py's default space (Archai's) and the LTS paper's per-layer space
(configs/search-lts-paper.yaml):

1. the cost models are fitted as a search fits them: ``--candidates`` architectures drawn (seed + 100) from each
   space are what a generation would evaluate, and ``lts.search.loop.fill_part_table`` measures what the models ask
   for (a designed sample of part shapes and whole peaks, then the most uncertain, round after round);
2. ``--per-space`` other architectures (seed, drawn as benchmarks.composition_fidelity draws them) are predicted
   (latency: stored part timings where their shape was timed, predicted where not, composed; peak memory:
   predicted), all of them before any is measured (a whole measurement becomes a sample the models fit on): what a
   first search on a machine predicts;
3. ``--wholes`` of each space's candidates are measured whole, as the front of an earlier search on the machine
   is (each whole latency a sample of the whole graph's latency model), and the held-out ones predicted again;
4. each is then measured whole, latency and peak memory in one fresh child (what the front's verification does).

Writes benchmarks/results/cost_prediction.json: per architecture the predicted and measured figures and their
errors (predicted / measured - 1), how many of its parts were predicted; per objective and space Spearman's rank
correlation, the median and worst |error|; and what fitting cost (shapes timed, peaks measured, seconds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks._cli import add_json_flag, add_threads_flag
from benchmarks._results import write_result
from benchmarks._stats import fidelity
from benchmarks.composition_fidelity import held_out
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.families import Arch
from lts.search.loop import fill_part_table
from lts.search.space import space_from_dict

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20
SPACES = ("default", "per-layer")


def candidates(n: int, seed: int) -> dict[str, list[Arch]]:
    """`n` architectures drawn from each space with seed ``seed + 100`` (not the held-out draw)."""
    spaces = {"default": space_from_dict({}), "per-layer": space_from_dict(
        yaml.safe_load((REPO / "configs" / "search-lts-paper.yaml").read_text())["space"])}
    out = {}
    for name, space in spaces.items():
        rng = np.random.default_rng(seed + 100)
        out[name] = list({a.archid: a for a in (space.sample(rng) for _ in range(n))}.values())
    return out


def fit_models(evaluator: Evaluator, pools: dict[str, list[Arch]]) -> dict[str, Any]:
    """Measure what the cost models ask for over each space's pool, as a search's generation does; what it cost."""
    out: dict[str, Any] = {}
    for name, pool in pools.items():
        t0 = time.perf_counter()
        before = {k: len(evaluator.samples.rows(k)) for k in ("latency:base", "latency:block", "memory")}
        fill_part_table(evaluator, pool, progress=False)
        evaluator.samples.refresh()
        after = {k: len(evaluator.samples.rows(k)) for k in before}
        out[name] = {"candidates": len(pool), "seconds": round(time.perf_counter() - t0, 1),
                     **{f"{k} measured": after[k] - before[k] for k in before}}
        print(f"{name}: {out[name]}", flush=True)
    return out


def earlier_fronts(evaluator: Evaluator, pools: dict[str, list[Arch]], k: int) -> dict[str, Any]:
    """Measure `k` architectures of each pool whole, as the front of an earlier search on this machine was: each
    whole latency is a sample the whole graph's latency model fits on (and each peak one of the memory model's)."""
    whole = evaluator.whole_graph_evaluator()
    assert whole is not None
    out = {}
    for name, pool in pools.items():
        t0 = time.perf_counter()
        failed = sum(not whole.evaluate(arch).ok for arch in pool[:k])
        out[name] = {"measured whole": min(k, len(pool)), "failed": failed,
                     "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}, measured whole: {out[name]}", flush=True)
    evaluator.samples.refresh()
    return out


def measure(archs: list[tuple[str, Arch]], evaluator: Evaluator, composed: dict[str, Any]) -> list[dict[str, Any]]:
    """Every held-out architecture predicted (all first), then measured whole: its row, beside what was predicted
    from the parts alone before any whole latency was measured (`composed`, by archid)."""
    whole = evaluator.whole_graph_evaluator()
    assert whole is not None
    predicted = [(space, arch, evaluator.evaluate(arch)) for space, arch in archs]
    rows = []
    for space, arch, p in predicted:
        w = whole.evaluate(arch)
        parts = p.measurement.get("latency") or {}
        c = composed[arch.archid]
        row = {"space": space, "archid": arch.archid, "n_layer": arch.n_layer, "n_embd": arch.n_embd,
               "n_inner": arch.describe("n_inner"), "n_head": arch.describe("n_head"),
               "latency from": "whole model" if "full" in parts else
               f"parts ({sum(t.repeats == 0 for t in parts.values())}/{len(parts)} predicted)",
               "latency whole (ms)": round(w.onnx_latency_s * 1e3, 2),
               "latency predicted (ms)": round(p.onnx_latency_s * 1e3, 2),
               "latency error": round(p.onnx_latency_s / w.onnx_latency_s - 1, 4),
               "composed predicted (ms)": round(c.onnx_latency_s * 1e3, 2),
               "composed error": round(c.onnx_latency_s / w.onnx_latency_s - 1, 4),
               "memory whole (MB)": round(w.onnx_memory_mb, 1), "memory predicted (MB)": round(p.onnx_memory_mb, 1),
               "memory error": round(p.onnx_memory_mb / w.onnx_memory_mb - 1, 4)}
        rows.append(row)
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per objective and space (and all): Spearman of predicted vs whole, median and worst |error|, median error,
    and the three worst architectures."""
    figures = {"latency": ("latency predicted (ms)", "latency whole (ms)"),
               "composed": ("composed predicted (ms)", "latency whole (ms)"),
               "memory": ("memory predicted (MB)", "memory whole (MB)")}
    summary: dict[str, Any] = fidelity(rows, figures, SPACES)
    for objective in figures:
        worst = sorted(rows, key=lambda r: -abs(r[f"{objective} error"]))[:3]
        summary[f"{objective}_worst"] = ", ".join(f"{r['archid']} ({r['space']}, {r['n_layer']}x{r['n_embd']}, "
                                                  f"{r[f'{objective} error']:+.1%})" for r in worst)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-space", type=int, default=12, help="held-out architectures per space (default %(default)s)")
    p.add_argument("--candidates", type=int, default=200,
                   help="architectures per space the models are fitted for (default %(default)s)")
    p.add_argument("--wholes", type=int, default=12, help="candidates per space measured whole before the held-out "
                                                          "ones are predicted, as an earlier search's front (default "
                                                          "%(default)s)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per forward (default %(default)s)")
    add_threads_flag(p, "ONNX Runtime intra-op threads")
    add_json_flag(p, "cost_prediction")
    args = p.parse_args(argv)
    archs = held_out(args.per_space, args.seed)
    with tempfile.TemporaryDirectory(prefix="lts-prediction-") as tmp:
        settings = EvalSettings.create(costs="predicted", seq_len=args.seq_len, threads=args.threads)
        evaluator = Evaluator(settings, Path(tmp) / "cache.sqlite")
        evaluator.calibrate()
        pools = candidates(args.candidates, args.seed)
        held = {a.archid for _, a in archs}
        pools = {k: [a for a in v if a.archid not in held] for k, v in pools.items()}
        fitting = fit_models(evaluator, pools)
        composed = {a.archid: evaluator.evaluate(a) for _, a in archs}  # no whole latency measured yet: parts only
        fronts = earlier_fronts(evaluator, pools, args.wholes)
        rows = measure(archs, evaluator, composed)
    summary = {**summarize(rows), "fitting": fitting, "earlier fronts": fronts}
    write_result("cost_prediction", conditions={
        "architectures": f"{args.per_space} held out per space, from the default space and the LTS paper's per-layer "
                         f"space (configs/search-lts-paper.yaml), uniform, seed {args.seed}; models fitted for "
                         f"{args.candidates} candidates per space (seed {args.seed + 100}), fresh store",
        "seq_len": args.seq_len, "batch": 1, "precision": "fp32",
        "earlier fronts": f"{args.wholes} of each space's candidates measured whole first, as an earlier search's "
                          f"front is: the samples the whole graph's latency model fits on",
        "predicted": "latency: the whole graph's model (fitted on whole timings) where it is sure, else stored part "
                     "timings or the part role's fit, composed; composed: parts only, predicted before any whole "
                     "latency was measured (a first search on a machine); peak memory: the memory fit on whole "
                     "peaks measured for a sample",
        "measured": "the whole forward graph: peak memory (fresh child: session made + one forward) and latency "
                    "timed beside the reference graph on the same session",
        "error": "predicted / measured - 1"}, rows=rows, summary=summary, threads=args.threads, path=args.json)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
