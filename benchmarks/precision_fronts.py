#!/usr/bin/env python
"""How an INT8 search differs from an fp32 one: two run folders of `search.py`, same space and seed.

    python search.py --run-dir runs/prec-fp32 ...                      # fp32 (the default)
    python search.py --run-dir runs/prec-int8 --precision int8 ...
    python -m benchmarks.precision_fronts runs/prec-fp32 runs/prec-int8

For every measured objective: the Spearman rank correlation of the two runs' values over the
architectures both evaluated (same seed: the whole first generation at least) and the median
int8 / fp32 ratio; then the fronts: sizes, members shared, Jaccard index, and how many of one
run's front the other run evaluated at all. Reads only the run folders (evaluations.jsonl,
pareto.csv, job.json, calibration.json). Writes benchmarks/results/precision_fronts.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from benchmarks._cli import add_json_flag
from benchmarks._results import write_result
from benchmarks._stats import spearman
from lts.cost.evaluator import EvalResult
from lts.cost.objectives import REGISTRY
from lts.search.record import RunRecord

PRECISIONS = ("fp32", "int8")


def front(run: Path) -> set[str]:
    with open(run / "pareto.csv", encoding="utf-8") as f:
        return {row["archid"] for row in csv.DictReader(f)}


def objective_rows(results: dict[str, dict[str, EvalResult]], objectives: list[str],
                   shared: list[str]) -> list[dict[str, Any]]:
    """Per measured objective over the architectures both runs evaluated: Spearman and int8 / fp32 ratios."""
    print("| objective | Spearman (int8 vs fp32) | median int8 / fp32 | int8 / fp32 range (p10–p90) |")
    print("| --- | ---: | ---: | ---: |")
    rows = []
    for name in objectives:
        pairs = [(results["fp32"][a].values[name], results["int8"][a].values[name]) for a in shared]
        pairs = [(x, y) for x, y in pairs if x == x and y == y and x]
        rho = spearman([x for x, _ in pairs], [y for _, y in pairs])
        ratios = sorted(y / x for x, y in pairs)
        p10, p90 = ratios[len(ratios) // 10], ratios[(9 * len(ratios)) // 10]
        print(f"| `{name}` | {rho:.3f} | {statistics.median(ratios):.2f} | {p10:.2f}–{p90:.2f} |")
        rows.append({"table": "objectives", "objective": name, "Spearman (int8 vs fp32)": round(rho, 3),
                     "median int8 / fp32": round(statistics.median(ratios), 3),
                     "int8 / fp32 p10": round(p10, 3), "int8 / fp32 p90": round(p90, 3)})
    return rows


def front_rows(fronts: dict[str, set[str]], results: dict[str, dict[str, EvalResult]]) -> list[dict[str, Any]]:
    """Per run's front: its size, the members both fronts share, Jaccard, and how many the other run evaluated."""
    both = fronts["fp32"] & fronts["int8"]
    jaccard = len(both) / len(fronts["fp32"] | fronts["int8"])
    print()
    print("| front | members | shared with the other | Jaccard | of its members, evaluated by the other run |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = []
    for k, other in (("fp32", "int8"), ("int8", "fp32")):
        seen = len(fronts[k] & set(results[other]))
        print(f"| {k} | {len(fronts[k])} | {len(both)} | {jaccard:.2f} | {seen} |")
        rows.append({"table": "fronts", "front": k, "members": len(fronts[k]), "shared with the other": len(both),
                     "Jaccard": round(jaccard, 3), "of its members, evaluated by the other run": seen})
    return rows


def shared_fronts(results: dict[str, dict[str, EvalResult]], jobs: dict[str, dict], shared: list[str]) -> dict:
    """The fronts taken over the architectures both runs evaluated (they differ only by the figures there)."""
    local = {}
    for k in PRECISIONS:
        points = [[REGISTRY[n].direction * results[k][a].values[n] for n in jobs[k]["objectives"].split(",")]
                  for a in shared]
        keep = NonDominatedSorting().do(np.array(points, dtype=float), only_non_dominated_front=True)
        local[k] = {shared[i] for i in keep}
    common = local["fp32"] & local["int8"]
    jaccard = len(common) / len(local["fp32"] | local["int8"])
    print()
    print(f"Over the {len(shared)} architectures both evaluated: fp32 front {len(local['fp32'])}, int8 front "
          f"{len(local['int8'])}, {len(common)} on both (Jaccard {jaccard:.2f})")
    return {"architectures both evaluated": len(shared), "fp32 front over those": len(local["fp32"]),
            "int8 front over those": len(local["int8"]), "on both": len(common), "Jaccard": round(jaccard, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fp32_run", type=Path)
    p.add_argument("int8_run", type=Path)
    add_json_flag(p, "precision_fronts")
    args = p.parse_args(argv)
    runs = {"fp32": args.fp32_run, "int8": args.int8_run}
    jobs = {k: json.loads((run / "job.json").read_text(encoding="utf-8")) for k, run in runs.items()}
    for k, job in jobs.items():
        if job.get("precision", "fp32") != k:
            print(f"error: {runs[k]} is a {job.get('precision', 'fp32')} run, expected {k}", file=sys.stderr)
            return 2
    results = {k: {a: r for a, r in RunRecord(run).load().items() if r.status == "ok"} for k, run in runs.items()}
    objectives = [name for name in jobs["fp32"]["objectives"].split(",") if REGISTRY[name].on_target]
    shared = sorted(set(results["fp32"]) & set(results["int8"]))
    for k, run in runs.items():
        calibration = json.loads((run / "calibration.json").read_text(encoding="utf-8"))
        print(f"# {k}: {run} — {calibration['target']}; {len(results[k])} evaluated, "
              f"seed {jobs[k]['seed']}, {jobs[k]['generations']} x {jobs[k]['population']}, "
              f"seq_len {jobs[k]['seq_len']}")
    print(f"# architectures evaluated by both: {len(shared)}")
    print()
    rows = objective_rows(results, objectives, shared) + front_rows({k: front(run) for k, run in runs.items()}, results)
    summary = shared_fronts(results, jobs, shared)
    write_result("precision_fronts", conditions={
        "runs": {k: str(run) for k, run in runs.items()}, "seed": jobs["fp32"]["seed"],
        "seq_len": jobs["fp32"]["seq_len"], "objectives": jobs["fp32"]["objectives"]},
        rows=rows, summary=summary, threads=jobs["fp32"].get("threads"), path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
