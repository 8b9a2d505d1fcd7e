#!/usr/bin/env python
"""How an INT8 search differs from an fp32 one: two run folders of `search.py`, same space and seed.

    python search.py --run-dir runs/prec-fp32 ...                      # fp32 (the default)
    python search.py --run-dir runs/prec-int8 --precision int8 ...
    python benchmarks/precision_fronts.py runs/prec-fp32 runs/prec-int8

For every measured objective: the Spearman rank correlation of the two runs' values over the
architectures both evaluated (same seed: the whole first generation at least) and the median
int8 / fp32 ratio; then the fronts: sizes, members shared, Jaccard index, and how many of one
run's front the other run evaluated at all. Reads only the run folders (evaluations.jsonl,
pareto.csv, job.json, calibration.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lts.cost.objectives import REGISTRY  # noqa: E402
from lts.search.record import RunRecord  # noqa: E402


def front(run: Path) -> set[str]:
    with open(run / "pareto.csv", encoding="utf-8") as f:
        return {row["archid"] for row in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fp32_run", type=Path)
    p.add_argument("int8_run", type=Path)
    args = p.parse_args(argv)
    import numpy as np
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
    from scipy.stats import spearmanr

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
    print("| objective | Spearman (int8 vs fp32) | median int8 / fp32 | int8 / fp32 range (p10–p90) |")
    print("| --- | ---: | ---: | ---: |")
    for name in objectives:
        pairs = [(results["fp32"][a].values[name], results["int8"][a].values[name]) for a in shared]
        pairs = [(x, y) for x, y in pairs if x == x and y == y and x]
        rho = spearmanr([x for x, _ in pairs], [y for _, y in pairs]).statistic
        ratios = sorted(y / x for x, y in pairs)
        p10, p90 = ratios[len(ratios) // 10], ratios[(9 * len(ratios)) // 10]
        print(f"| `{name}` | {rho:.3f} | {statistics.median(ratios):.2f} | {p10:.2f}–{p90:.2f} |")
    fronts = {k: front(run) for k, run in runs.items()}
    both = fronts["fp32"] & fronts["int8"]
    print()
    print("| front | members | shared with the other | Jaccard | of its members, evaluated by the other run |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k, other in (("fp32", "int8"), ("int8", "fp32")):
        seen = len(fronts[k] & set(results[other]))
        print(f"| {k} | {len(fronts[k])} | {len(both)} | {len(both) / len(fronts['fp32'] | fronts['int8']):.2f} "
              f"| {seen} |")
    # The runs' fronts also differ because the two searches went different ways after the first
    # generation; over the architectures both evaluated, the fronts differ only by the figures.
    local = {}
    for k in runs:
        points = [[REGISTRY[n].direction * results[k][a].values[n] for n in jobs[k]["objectives"].split(",")]
                  for a in shared]
        keep = NonDominatedSorting().do(np.array(points, dtype=float), only_non_dominated_front=True)
        local[k] = {shared[i] for i in keep}
    common = local["fp32"] & local["int8"]
    print()
    jaccard = len(common) / len(local["fp32"] | local["int8"])
    print(f"Over the {len(shared)} architectures both evaluated: fp32 front {len(local['fp32'])}, int8 front "
          f"{len(local['int8'])}, {len(common)} on both (Jaccard {jaccard:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
