#!/usr/bin/env python
"""Search quality as a number: NSGA-II and random search at the default budget, on the exact front's scale.

    python -m benchmarks.search_quality                       # Archai's space, seeds 1-5, 216 candidates each
    python -m benchmarks.search_quality --budget 6x36,12x36,24x36,6x72,12x72 --cache sq.sqlite

1. The exact front: ``search.py --strategy exhaustive`` over the space (default: Archai's 5,880 architectures),
   objectives composed from measured parts (default ``non_embedding_params,onnx_latency_s``: the latency of
   every architecture is its embeddings-and-head part plus its blocks, 14 + 588 part timings). Timed: the
   whole table and front.
2. NSGA-II as users run it (search.py's loop, ``lts.search.loop.run_search``, seeds given, each budget
   GENERATIONSxPOPULATION; default 6x36 = 216 candidates, search.py's defaults; the front's whole timing that
   search.py does after the search changes nothing of it and is left out) and random search (the same number of
   distinct architectures drawn uniformly, same seeds), all sharing the exhaustive run's store, so every
   architecture has one value.
3. On the exact front's scale: each run's front is taken over the values of the architectures it evaluated
   (those of the exhaustive table), its hypervolume (pymoo, objectives normalised over the whole space,
   reference 1.1) divided by the exact front's, and how many exact-front members it evaluated.

Writes benchmarks/results/search_quality.json. The fronts of ``--strategy exhaustive`` and NSGA-II are
composed latencies, as a search reports them; docs/measuring.md gives the composition's fidelity.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._cli import add_json_flag, add_threads_flag
from benchmarks._results import write_result
from lts.cost.evaluator import EvalResult, Evaluator
from lts.search.executors import LocalExecutor
from lts.search.fronts import hypervolume, pareto_front
from lts.search.job import SearchJob, run_job
from lts.search.loop import run_search
from lts.search.record import RunRecord
from lts.search.space import Space, space_from_dict
from lts.search.verify import read_verified


def job(tmp: Path, name: str, cache: Path, args: argparse.Namespace, **settings: object) -> SearchJob:
    return SearchJob(objectives=args.objectives, seq_len=args.seq_len, threads=args.threads, run_dir=str(tmp / name),
                     models_dir=str(tmp / f"models-{name}"), assets_dir=str(tmp / "assets"), cache=str(cache),
                     **settings)


def run(tmp: Path, name: str, cache: Path, args: argparse.Namespace, **settings: object) -> tuple[list, float]:
    """One search.py run (run_job: the exact front, timed whole) in `tmp`; (its results in order, seconds)."""
    t0 = time.perf_counter()
    run_job(job(tmp, name, cache, args, **settings), progress=args.progress)
    return [r for _, r in RunRecord(tmp / name).read()], time.perf_counter() - t0


def search(tmp: Path, name: str, cache: Path, args: argparse.Namespace, **settings: object) -> tuple[list, float]:
    """One NSGA-II search (search.py's loop), its evaluations from the shared store; (results, seconds)."""
    spec = job(tmp, name, cache, args, **settings)
    evaluator = Evaluator(spec.eval_settings(), cache)
    t0 = time.perf_counter()
    results, _, _ = run_search(spec.search_space(), spec.search_settings(), evaluator, LocalExecutor(1),
                               tmp / name, progress=args.progress)
    return results, time.perf_counter() - t0


@dataclass
class Exact:
    """The exhaustive run: its successful results (by archid too), the exact front and its hypervolume."""

    ok: list[EvalResult]
    by_id: dict[str, EvalResult]
    front_ids: set[str]
    hypervolume: float


def exact_front(tmp: Path, cache: Path, args: argparse.Namespace, objectives: tuple[str, ...],
                space: Space) -> tuple[Exact, dict[str, Any], dict[str, Any]]:
    """search.py --strategy exhaustive over `space`: the exact front, its row of the table, its summary figures."""
    print(f"exact front: every architecture of the space ({space.size:,} gene combinations) ...", flush=True)
    table, exhaustive_s = run(tmp, "exhaustive", cache, args, strategy="exhaustive")
    ok = [r for r in table if r.ok]
    exact = pareto_front(ok, objectives)
    hv_exact = hypervolume(exact, ok, objectives)
    print(f"  {len(table):,} architectures ({len(table) - len(ok)} failed), front {len(exact)}, "
          f"hypervolume {hv_exact:.4f}, {exhaustive_s:.0f} s", flush=True)
    # the measuring seconds of the members timed whole now (none when the store had them)
    whole_s = sum(r.eval_seconds for r in read_verified(tmp / "exhaustive").values() if not r.cached)
    row = {"strategy": "exhaustive", "seed": "-", "candidates": len(table),
           "measured now": sum(not r.cached for r in table), "front": len(exact),
           "hypervolume": round(hv_exact, 4), "hypervolume / exact": 1.0,
           "exact-front members found": len(exact), "seconds": round(exhaustive_s, 1),
           "of which front timed whole": round(whole_s, 1)}
    summary = {"exact_front": len(exact), "architectures": len(table), "exhaustive_seconds": round(exhaustive_s, 1),
               "exhaustive_front_timed_whole_seconds": round(whole_s, 1)}
    return Exact(ok, {r.archid: r for r in ok}, {r.archid for r in exact}, hv_exact), row, summary


def scored(exact: Exact, objectives: tuple[str, ...], strategy: str, seed: int, archids: list[str],
           seconds: float) -> dict[str, Any]:
    """A strategy's row: its front over the values of the architectures it evaluated, on the exact front's scale."""
    mine = [exact.by_id[a] for a in dict.fromkeys(archids) if a in exact.by_id]
    front = pareto_front(mine, objectives)
    hv = hypervolume(front, exact.ok, objectives)  # normalised over the whole space, as the exact front's
    row = {"strategy": strategy, "seed": seed, "candidates": len(mine), "measured now": "-", "front": len(front),
           "hypervolume": round(hv, 4), "hypervolume / exact": round(hv / exact.hypervolume, 4),
           "exact-front members found": len(exact.front_ids & set(archids)),
           "seconds": round(seconds, 1), "of which front timed whole": "-"}
    print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The exact front, then NSGA-II and random search at each budget and seed: the rows, the exact run's figures."""
    objectives = tuple(args.objectives.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [tuple(int(v) for v in b.split("x")) for b in args.budget.split(",")]
    space = space_from_dict({})
    with tempfile.TemporaryDirectory(prefix="lts-search-quality-") as tmp_name:
        tmp = Path(tmp_name)
        cache = args.cache or tmp / "cache.sqlite"
        exact, row, summary = exact_front(tmp, cache, args, objectives, space)
        rows = [row]
        for generations, population in budgets:
            label = f"NSGA-II {generations}x{population}"
            for seed in seeds:
                results, seconds = search(tmp, f"nsga-{generations}x{population}-{seed}", cache, args,
                                          generations=generations, population=population, seed=seed)
                rows.append(scored(exact, objectives, label, seed, [r.archid for r in results], seconds))
            if any(r["strategy"] == f"random {generations * population}" for r in rows):
                continue  # another budget of the same size drew these already
            for seed in seeds:  # random search: as many distinct architectures, drawn uniformly
                rng = np.random.default_rng(seed)
                drawn: dict[str, None] = {}
                while len(drawn) < generations * population:
                    drawn[space.sample(rng).archid] = None
                rows.append(scored(exact, objectives, f"random {generations * population}", seed, list(drawn), 0.0))
    return rows, summary


def summarize(rows: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """`summary` (the exact run's figures) with, per strategy, the mean and worst hypervolume ratio and the mean
    number of exact-front members found."""
    summary = dict(summary)
    for label in dict.fromkeys(r["strategy"] for r in rows[1:]):
        ratios = [r["hypervolume / exact"] for r in rows if r["strategy"] == label]
        found = [r["exact-front members found"] for r in rows if r["strategy"] == label]
        key = label.lower().replace(" ", "_").replace("-", "")
        summary[f"{key}_hv_ratio_mean"] = round(float(np.mean(ratios)), 4)
        summary[f"{key}_hv_ratio_min"] = round(float(np.min(ratios)), 4)
        summary[f"{key}_exact_members_found_mean"] = round(float(np.mean(found)), 1)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds (default %(default)s)")
    p.add_argument("--budget", default="6x36", help="comma-separated GENERATIONSxPOPULATION (default %(default)s)")
    p.add_argument("--objectives", default="non_embedding_params,onnx_latency_s",
                   help="composable objectives (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per timed forward (default %(default)s)")
    add_threads_flag(p, "ONNX Runtime intra-op threads")
    p.add_argument("--progress", action="store_true", help="progress bars")
    p.add_argument("--cache", type=Path, default=None,
                   help="the store to use and keep (default: a temporary one); one kept from an earlier run serves "
                        "the table from it, and the row says how many architectures were measured now")
    add_json_flag(p, "search_quality")
    args = p.parse_args(argv)
    rows, exact_summary = measure(args)
    summary = summarize(rows, exact_summary)
    write_result("search_quality", conditions={
        "space": "Archai's LTS space (search.py's default): 5,880 architectures", "objectives": args.objectives,
        "latency": "composed: base + blocks, timings per shape", "seq_len": args.seq_len, "seeds": args.seeds,
        "budgets": args.budget, "hypervolume": "pymoo HV, objectives normalised over every architecture of the "
        "space, reference 1.1; ratio to the exact front's"},
        rows=rows, summary=summary, threads=args.threads, path=args.json)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
