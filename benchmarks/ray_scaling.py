#!/usr/bin/env python
"""Searches per minute on a Ray cluster of 1 and 2 worker nodes on this machine, against the local engine.

    python -m benchmarks.ray_scaling                      # population 36, 3 generations, 2 repeats
    python -m benchmarks.ray_scaling --population 72 --generations 2

Each layout runs the same search through the CLI (``search.py``, seed 1, an empty cache each
time, objectives ``non_embedding_params,onnx_file_mb``: nothing is timed, so the machine lock
never serialises them and every node works at once). Ray clusters are real ones
(``ray.cluster_utils``: a head with no CPU for tasks, plus N worker nodes with 1 CPU each, each
its own raylet). Layouts are interleaved, repeats alternate. Printed: candidates per minute from
the search's own "evaluated N architectures in S s" (start-up excluded), and Ray's overhead per
task: the round trip of an empty task, one at a time, and the time per task with 200 in flight.
Writes benchmarks/results/ray_scaling.json.

Needs Ray (``pip install -e '.[distributed]'``), imported where it is used: an optional extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks._cli import add_json_flag
from benchmarks._results import machine_text, write_result

REPO = Path(__file__).resolve().parent.parent
OBJECTIVES = "non_embedding_params,onnx_file_mb"  # nothing timed: the machine lock never serialises the nodes


def search(args: argparse.Namespace, engine: list[str], work: Path) -> float:
    """Candidates per minute of one search (from its summary line)."""
    run = Path(tempfile.mkdtemp(dir=work))
    proc = subprocess.run([sys.executable, str(REPO / "search.py"), "--objectives", OBJECTIVES,
                           "--population", str(args.population), "--generations", str(args.generations), "--seed", "1",
                           "--run-dir", str(run / "run"), "--cache", str(run / "c.sqlite"), "--out", str(run / "m"),
                           "--assets-dir", str(run / "a"), "--no-progress", *engine], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"search failed ({' '.join(engine)}):\n{proc.stderr[-2000:]}")
    m = re.search(r"evaluated (\d+) architectures .* in (\d+(?:\.\d+)?) s", proc.stdout)
    assert m, proc.stdout
    return int(m.group(1)) / float(m.group(2)) * 60


def overhead(address: str) -> tuple[float, float]:
    """(ms per empty task, one at a time; ms per empty task, 200 in flight) on the cluster at `address`."""
    import ray

    ray.init(address=address, log_to_driver=False, include_dashboard=False, logging_level="ERROR")
    noop = ray.remote(num_cpus=1)(lambda: None)
    ray.get([noop.remote() for _ in range(20)])  # workers started
    one = []
    for _ in range(100):
        t0 = time.perf_counter()
        ray.get(noop.remote())
        one.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ray.get([noop.remote() for _ in range(200)])
    many = (time.perf_counter() - t0) / 200
    ray.shutdown()
    return statistics.median(one) * 1e3, many * 1e3


def clusters() -> dict[int, Any]:
    """Ray clusters on this machine: a head with no CPU for tasks plus 1 and 2 worker nodes of 1 CPU each."""
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20}
    out = {}
    for n in (1, 2):
        c = Cluster(initialize_head=True, connect=False, head_node_args={
            "num_cpus": 0, "object_store_memory": 80 * 2**20, "include_dashboard": False})
        for _ in range(n):
            c.add_node(**node)
        c.wait_for_nodes()
        out[n] = c
    return out


def measure(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[int, tuple[float, float]], float]:
    """Candidates per minute of each layout, --repeats interleaved runs; each cluster's task overhead; seconds."""
    work = Path(tempfile.mkdtemp(prefix="lts-ray-scaling-"))
    made = clusters()
    layouts = {"local engine, 1 worker": ["--engine", "local"],
               "local engine, 2 workers": ["--engine", "local", "--workers", "2"],
               **{f"ray, {n} worker node(s)": ["--engine", "ray", "--ray-address", c.address]
                  for n, c in made.items()}}
    rates: dict[str, list[float]] = {k: [] for k in layouts}
    t_start = time.perf_counter()
    try:
        for r in range(args.repeats):
            for name, engine in (layouts.items() if r % 2 == 0 else reversed(layouts.items())):
                rates[name].append(search(args, engine, work))
                print(f"repeat {r + 1}: {name}: {rates[name][-1]:.0f} candidates/min", flush=True)
        costs = {n: overhead(c.address) for n, c in made.items()}
    finally:
        for c in made.values():
            c.shutdown()
    return rates, costs, time.perf_counter() - t_start


def rows(rates: dict[str, list[float]], costs: dict[int, tuple[float, float]]) -> list[dict[str, Any]]:
    """The two tables, printed, and their rows."""
    print("\n| layout | candidates / min (median) | runs | vs local, 1 worker |\n|---|---:|---|---:|")
    base = statistics.median(rates["local engine, 1 worker"])
    out = []
    for name, values in rates.items():
        v = statistics.median(values)
        print(f"| {name} | {v:.0f} | {', '.join(f'{x:.0f}' for x in values)} | {v / base:.2f} |")
        out.append({"table": "layouts", "layout": name, "candidates / min (median)": round(v, 1),
                    "runs": [round(x, 1) for x in values], "vs local, 1 worker": round(v / base, 3)})
    print("\n| cluster | empty task, one at a time (ms) | empty task, 200 in flight (ms per task) |\n|---|---:|---:|")
    for n, (one, many) in costs.items():
        print(f"| {n} worker node(s) | {one:.2f} | {many:.2f} |")
        out.append({"table": "Ray's overhead per task", "cluster": f"{n} worker node(s)",
                    "empty task, one at a time (ms)": round(one, 3),
                    "empty task, 200 in flight (ms per task)": round(many, 3)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--population", type=int, default=36)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    add_json_flag(p, "ray_scaling")
    args = p.parse_args(argv)
    if importlib.util.find_spec("ray") is None:
        print("ray_scaling: error: needs Ray: pip install -e '.[distributed]'", file=sys.stderr)
        return 2
    rates, costs, seconds = measure(args)
    n_cands = args.population * args.generations
    print(f"\nsearch.py, objectives {OBJECTIVES}, population {args.population} x {args.generations} generations "
          f"({n_cands} candidates), seed 1, empty cache each run; {args.repeats} interleaved repeats; Ray "
          f"{metadata.version('ray')}, worker nodes of 1 CPU each, head with none; {machine_text()}; "
          f"{seconds:.0f} s in all")
    write_result("ray_scaling", conditions={
        "objectives": OBJECTIVES, "population": args.population, "generations": args.generations,
        "candidates": n_cands, "seed": 1, "cache": "empty each run", "repeats": args.repeats,
        "ray nodes": "worker nodes of 1 CPU each, head with none"},
        rows=rows(rates, costs), threads=None, extra_versions=("ray",), path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
