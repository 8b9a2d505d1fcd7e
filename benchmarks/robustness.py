#!/usr/bin/env python
"""Is the front noise, and do latencies taken at different moments compare? Three checks.

    python -m benchmarks.robustness remeasure RUN          # (a) re-measure RUN's robust front, fresh processes
    python -m benchmarks.robustness compare RUN_A RUN_B    # (b) two runs on one scale: hypervolumes, overlap
    python -m benchmarks.robustness drift [--archs N]      # raw vs reference-relative latency under a slowdown

(a) Every robust-front member of RUN (``pareto.csv``, ``robust`` column) is measured again,
each in a fresh measuring process, with a fresh calibration, no cache; then the robust front
is computed among the re-measured set with the new values and noise. Printed: how many stay
non-dominated within noise, and how far latency (ms and reference units) and memory moved.

(b) Both runs' results are read from their run folders (``evaluations.jsonl``) and rescaled
to RUN_A's calibration (a latency is kept in reference-graph units beside its seconds, so a
run's figures can be put on another run's scale). Hypervolume of each run's front with the
objectives normalised over the union of both runs' results; plain and robust fronts' overlap.

(drift) N architectures of the default space are timed whole (``latency_mode=full``) while
the machine is idle, then while a busy process competes for one core (a slower machine, as a
noisy VM neighbour makes it), then idle again. Printed per architecture: the loaded/idle
ratio of the raw latency and of the latency relative to the reference graph timed beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import random
import statistics
import sys
import time
from pathlib import Path

from benchmarks._cli import add_json_flag
from benchmarks._results import machine_text, print_table, write_result
from lts.cost.evaluator import EvalResult, Evaluator
from lts.cost.measure import measure_architecture
from lts.cost.settings import MeasureSettings
from lts.cost.target import CPUTarget
from lts.families.gpt2 import ArchConfig
from lts.families.gpt2.space import SearchSpace
from lts.search.fronts import hypervolume, pareto_front, robust_front
from lts.search.job import SearchJob
from lts.search.record import RunRecord, load_calibration


def load_run(run: Path) -> tuple[SearchJob, list[EvalResult], float | None]:
    job = SearchJob(**json.loads((run / "job.json").read_text()))
    results = list(RunRecord(run).load().values())
    return job, results, load_calibration(run)


def remeasure(run: Path, json_path: Path | None = None) -> None:
    job, results, calibration = load_run(run)
    objectives = job.search_settings().objectives
    with open(run / "pareto.csv") as f:
        robust_ids = {r["archid"] for r in csv.DictReader(f) if r.get("robust") == "True"}
    members = [r for r in results if r.archid in robust_ids]
    settings = job.eval_settings()
    evaluator = Evaluator(settings, None)  # no cache: every member is measured again
    t0 = time.perf_counter()
    again = [evaluator.compute(r.config) for r in members]
    out = run / "remeasured"  # the re-measured results, a run record of their own (read by `compare`)
    out.mkdir(exist_ok=True)
    record = RunRecord(out)
    record.path.unlink(missing_ok=True)
    for r in again:
        record.append(r, 0)
    failed = [r for r in again if not r.ok]
    ok = [r for r in again if r.ok]
    stay = robust_front(ok, objectives)
    old = {r.archid: r for r in members}
    lat = [r.onnx_latency_s / old[r.archid].onnx_latency_s for r in ok]
    units = [r.onnx_latency_units / old[r.archid].onnx_latency_units for r in ok]
    mem = [abs(r.onnx_memory_mb - old[r.archid].onnx_memory_mb) for r in ok]
    print(f"\n## Re-measured robust front of {run.name} ({machine_text()}; {settings.target.describe()}, "
          f"seq_len {settings.seq_len}, latency mode {settings.latency_mode}; {time.perf_counter() - t0:.0f} s)\n")
    print_table(["robust members", "re-measured ok", "still non-dominated within noise", "share",
                "latency ms new/old (median, min-max)", "latency units new/old (median, min-max)",
                "memory |diff| MiB (median, max)", "calibration old -> new (ms)"],
                [[len(members), len(ok), len(stay), f"{len(stay) / max(1, len(ok)):.0%}",
                 f"{statistics.median(lat):.3f} ({min(lat):.3f}-{max(lat):.3f})",
                 f"{statistics.median(units):.3f} ({min(units):.3f}-{max(units):.3f})",
                 f"{statistics.median(mem):.2f} ({max(mem):.2f})",
                 f"{(calibration or 0) * 1e3:.3f} -> {(evaluator.calibration_s or 0) * 1e3:.3f}"]])
    for r in failed:
        print(f"failed: {r.archid} {r.status}")
    write_result(f"robustness_remeasure-{run.name}", conditions={
        "run": run.name, "target": settings.target.describe(), "seq_len": settings.seq_len,
        "latency_mode": settings.latency_mode, "cache": "none (every member measured again)"}, rows=[{
            "robust members": len(members), "re-measured ok": len(ok), "still non-dominated within noise": len(stay),
            "share": round(len(stay) / max(1, len(ok)), 3),
            "latency ms new/old median": round(statistics.median(lat), 3) if lat else None,
            "latency ms new/old range": [round(min(lat), 3), round(max(lat), 3)] if lat else None,
            "latency units new/old median": round(statistics.median(units), 3) if units else None,
            "latency units new/old range": [round(min(units), 3), round(max(units), 3)] if units else None,
            "memory |diff| MiB median": round(statistics.median(mem), 2) if mem else None,
            "memory |diff| MiB max": round(max(mem), 2) if mem else None,
            "calibration ms old": round((calibration or 0) * 1e3, 3),
            "calibration ms new": round((evaluator.calibration_s or 0) * 1e3, 3),
            "failed": len(failed)}], threads=settings.target.threads, path=json_path)


def compare(run_a: Path, run_b: Path, json_path: Path | None = None) -> None:
    job_a, res_a, cal_a = load_run(run_a)
    job_b, res_b, _ = load_run(run_b)
    objectives = job_a.search_settings().objectives
    scale = Evaluator(job_a.eval_settings(), None, calibration_s=cal_a)  # run A's scale for both runs
    res_a = [scale.rescaled(r) for r in res_a]
    res_b = [scale.rescaled(r) for r in res_b]
    union = res_a + res_b
    fronts = [pareto_front(res, objectives) for res in (res_a, res_b)]
    robust = [robust_front(f, objectives) for f in fronts]
    hv = [hypervolume(f, union, objectives) for f in fronts]
    plain_ids = [{r.archid for r in f} for f in fronts]

    def jaccard(x: set, y: set) -> str:
        return f"{len(x & y)} shared, Jaccard {len(x & y) / max(1, len(x | y)):.2f}"

    print(f"\n## {run_a.name} vs {run_b.name} on one scale ({machine_text()}; latencies at {run_a.name}'s calibration "
          f"{(cal_a or 0) * 1e3:.3f} ms; objectives normalised over both runs' {sum(r.ok for r in union)} "
          f"successful results)\n")
    print_table(["run", "evaluated", "front", "robust front", "hypervolume"],
                [[run_a.name, len(res_a), len(fronts[0]), len(robust[0]), f"{hv[0]:.4f}"],
                 [run_b.name, len(res_b), len(fronts[1]), len(robust[1]), f"{hv[1]:.4f}"]])
    print(f"\nhypervolume difference: {abs(hv[0] - hv[1]) / max(hv):.2%}; plain fronts: "
          f"{jaccard(*plain_ids)}; robust fronts: {jaccard(*robust)}")
    write_result(f"robustness_compare-{run_a.name}-{run_b.name}", conditions={
        "runs": [run_a.name, run_b.name], "scale": f"{run_a.name}'s calibration",
        "calibration_ms": round((cal_a or 0) * 1e3, 3), "successful_results": sum(r.ok for r in union)}, rows=[
        {"run": run.name, "evaluated": len(res), "front": len(f), "robust front": len(rf), "hypervolume": round(h, 4)}
        for run, res, f, rf, h in zip((run_a, run_b), (res_a, res_b), fronts, robust, hv)], summary={
        "hypervolume difference": f"{abs(hv[0] - hv[1]) / max(hv):.2%}",
        "plain fronts": jaccard(*plain_ids), "robust fronts": jaccard(*robust)},
        threads=job_a.eval_settings().target.threads, path=json_path)


def _burn(stop: float) -> None:
    while time.time() < stop:
        pass


def drift(n_archs: int, seed: int, json_path: Path | None = None) -> None:
    space = SearchSpace.from_dict({})
    rng = random.Random(seed)
    configs: list[ArchConfig] = []
    while len(configs) < n_archs:
        c = space.decode([rng.randint(int(lo), int(hi)) for lo, hi in zip(space.xl, space.xu)])
        if c.archid not in {x.archid for x in configs}:
            configs.append(c)
    settings, target = MeasureSettings(), CPUTarget()

    def time_all() -> list:
        return [measure_architecture(c, settings, target, ("latency",), parts=("full",)).get("latency")["full"]
                for c in configs]

    idle = time_all()
    stop = time.time() + 3600
    hog = mp.get_context("spawn").Process(target=_burn, args=(stop,), daemon=True)
    hog.start()
    try:
        time.sleep(1)
        loaded = time_all()
    finally:
        hog.kill()
        hog.join()
    idle2 = time_all()
    print(f"\n## Latency under a slowdown ({machine_text()}; {target.describe()}, seq_len {settings.seq_len}, "
          f"whole graph; loaded = one busy process competing for a core)\n")
    rows = []
    raw_dev, rel_dev, raw_idle, rel_idle = [], [], [], []
    for c, a, b, a2 in zip(configs, idle, loaded, idle2):
        raw, rel = b.median_s / a.median_s, (b.median_s / b.reference_s) / (a.median_s / a.reference_s)
        raw2, rel2 = a2.median_s / a.median_s, (a2.median_s / a2.reference_s) / (a.median_s / a.reference_s)
        raw_dev.append(abs(raw - 1))
        rel_dev.append(abs(rel - 1))
        raw_idle.append(abs(raw2 - 1))
        rel_idle.append(abs(rel2 - 1))
        rows.append([f"`{c.archid}` ({c.n_layer}x{c.n_embd}/{c.n_inner})", f"{a.median_s * 1e3:.1f}",
                     f"{raw:.3f}", f"{rel:.3f}", f"{raw2:.3f}", f"{rel2:.3f}"])
    header = ["architecture", "idle latency (ms)", "loaded/idle raw", "loaded/idle relative to reference",
              "idle again/idle raw", "idle again/idle relative"]
    print_table(header, rows)
    print(f"\nmedian |ratio - 1|: loaded raw {statistics.median(raw_dev):.1%}, loaded relative "
          f"{statistics.median(rel_dev):.1%}; idle again raw {statistics.median(raw_idle):.1%}, relative "
          f"{statistics.median(rel_idle):.1%}")
    write_result("robustness_drift", conditions={
        "archs": n_archs, "seed": seed, "target": target.describe(), "seq_len": settings.seq_len,
        "graph": "whole", "loaded": "one busy process competing for a core"},
        rows=[dict(zip(header, r)) for r in rows], summary={
        "median |ratio - 1|, loaded raw": f"{statistics.median(raw_dev):.1%}",
        "median |ratio - 1|, loaded relative": f"{statistics.median(rel_dev):.1%}",
        "median |ratio - 1|, idle again raw": f"{statistics.median(raw_idle):.1%}",
        "median |ratio - 1|, idle again relative": f"{statistics.median(rel_idle):.1%}"},
        threads=target.threads, path=json_path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("remeasure")
    r.add_argument("run", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("run_a", type=Path)
    c.add_argument("run_b", type=Path)
    d = sub.add_parser("drift")
    d.add_argument("--archs", type=int, default=8)
    d.add_argument("--seed", type=int, default=0)
    for s, default in ((r, "robustness_remeasure-RUN"), (c, "robustness_compare-RUN_A-RUN_B"),
                       (d, "robustness_drift")):
        add_json_flag(s, default)
    args = p.parse_args(argv)
    if args.cmd == "remeasure":
        remeasure(args.run, args.json)
    elif args.cmd == "compare":
        compare(args.run_a, args.run_b, args.json)
    else:
        drift(args.archs, args.seed, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
