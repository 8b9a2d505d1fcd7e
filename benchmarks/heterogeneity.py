#!/usr/bin/env python
"""What a per-layer space buys: the homogeneous and the per-layer search at equal evaluation budgets, on one scale.

    python -m benchmarks.heterogeneity                                  # 3 x 16 candidates each, seeds 1 and 2
    python -m benchmarks.heterogeneity --generations 6 --population 36 --seeds 1,2,3 --seq-len 1024

Both searches run over the LTS paper's ranges (configs/search-lts-paper.yaml: n_layer 2-16, n_embd
128-1024 step 64, n_inner 256-4096 step 64, n_head 2/4/8, vocab 50257): once with one block shape for every
layer (``per_layer: false``) and once with a shape per layer (``per_layer: true``), same seed, same objectives,
same number of evaluated candidates, the two interleaved seed by seed so a drift of the machine falls on both.
Each search is ``lts search`` itself (``run_job``), with its measurement (isolated, drift-corrected, composed
latency) and a cache of its own per seed shared by the pair (a block shape timed for one is served to the
other: the same figure either way).

Per seed, on one scale: every successful result of both runs is put together, each objective normalised to
[0, 1] over that union (maximised ones negated), and each run's front gets pymoo's hypervolume at reference
1.1; also the front sizes, how many of each front's members the other front dominates, and the share of the
union's front each run contributed. Writes benchmarks/results/heterogeneity.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from pymoo.indicators.hv import HV

from benchmarks._cli import add_json_flag, add_threads_flag
from benchmarks._results import write_result
from lts.search.fronts import objective_matrix, pareto_front
from lts.search.job import SearchJob, run_job
from lts.search.record import RunRecord

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "configs" / "search-lts-paper.yaml"


def dominated_by(a: np.ndarray, b: np.ndarray) -> int:
    """How many rows of `a` some row of `b` dominates (all minimised)."""
    return int(sum(any(np.all(y <= x) and np.any(y < x) for y in b) for x in a))


def one_search(space: dict, per_layer: bool, seed: int, args: argparse.Namespace, tmp: Path, cache: Path) -> dict:
    """One `lts search` (run_job) over `space`, with a shape per layer or not; its results, seconds and counts."""
    name = "per-layer" if per_layer else "homogeneous"
    run_dir = tmp / f"{name}-{seed}"
    job = SearchJob(generations=args.generations, population=args.population, seed=seed, seq_len=args.seq_len,
                    context=args.context, threads=args.threads, objectives=args.objectives,
                    space={**space, "per_layer": per_layer}, models_dir=str(tmp / f"models-{name}-{seed}"),
                    assets_dir=str(tmp / "assets"), run_dir=str(run_dir), cache=str(cache))
    t0 = time.perf_counter()
    out = run_job(job, resume=False, given=set(), progress=False)
    seconds = time.perf_counter() - t0
    results = [r for _, r in RunRecord(run_dir).read()]
    print(f"  seed {seed} {name:<11}: {out.n_evaluated} evaluated ({out.n_failed} failed), front {len(out.front_ids)}, "
          f"{seconds:.0f} s", flush=True)
    return {"name": name, "results": results, "seconds": seconds, "evaluated": out.n_evaluated,
            "failed": out.n_failed}


def compare_seed(space: dict, seed: int, args: argparse.Namespace, tmp: Path) -> list[dict]:
    """The homogeneous and the per-layer search at `seed` (the pair interleaved, one store), put on one scale:
    one row each."""
    objectives = tuple(args.objectives.split(","))
    cache = tmp / f"cache-{seed}.sqlite"
    # interleaved: which of the pair runs first alternates with the seed
    order = (False, True) if seed % 2 else (True, False)
    runs = {r["name"]: r for r in (one_search(space, pl, seed, args, tmp, cache) for pl in order)}
    union = [r for run in runs.values() for r in run["results"] if r.ok]
    F_all, _ = objective_matrix(union, objectives)
    lo, hi = F_all.min(axis=0), F_all.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    hv = HV(ref_point=np.full(len(objectives), 1.1))
    fronts = {n: pareto_front(run["results"], objectives) for n, run in runs.items()}
    scaled = {n: (objective_matrix(f, objectives)[0] - lo) / span for n, f in fronts.items()}
    joint = {r.archid for r in pareto_front(union, objectives)}
    rows = []
    for name, run in runs.items():
        other = "per-layer" if name == "homogeneous" else "homogeneous"
        rows.append({
            "seed": seed, "space": name, "evaluated": run["evaluated"], "failed": run["failed"],
            "front": len(fronts[name]), "hypervolume": round(float(hv(scaled[name])), 4),
            "members dominated by the other front": dominated_by(scaled[name], scaled[other]),
            "members on the joint front": sum(r.archid in joint for r in fronts[name]),
            "seconds": round(run["seconds"], 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--seeds", default="1,2", help="comma-separated seeds (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per timed forward (default %(default)s)")
    p.add_argument("--context", type=int, default=256)
    add_threads_flag(p, "ONNX Runtime intra-op threads")
    p.add_argument("--objectives", default="non_embedding_params,onnx_latency_s,onnx_memory_mb")
    add_json_flag(p, "heterogeneity")
    args = p.parse_args(argv)
    space = yaml.safe_load(PRESET.read_text())["space"]
    space.pop("per_layer", None)
    with tempfile.TemporaryDirectory(prefix="lts-heterogeneity-") as tmp_name:
        rows = [row for seed in (int(s) for s in args.seeds.split(","))
                for row in compare_seed(space, seed, args, Path(tmp_name))]
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    per = {s: [r["hypervolume"] for r in rows if r["space"] == s] for s in ("homogeneous", "per-layer")}
    summary = {f"mean_hypervolume_{s.replace('-', '_')}": round(float(np.mean(v)), 4) for s, v in per.items()}
    write_result("heterogeneity", conditions={
        "space": "configs/search-lts-paper.yaml ranges, per_layer false vs true", "generations": args.generations,
        "population": args.population, "candidates_per_search": args.generations * args.population,
        "seeds": args.seeds, "seq_len": args.seq_len, "context": args.context, "objectives": args.objectives,
        "hypervolume": "pymoo HV, objectives normalised over the union of both runs per seed, reference 1.1"},
        rows=rows, summary=summary, threads=args.threads, path=args.json)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
