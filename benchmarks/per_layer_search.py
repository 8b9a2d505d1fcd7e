#!/usr/bin/env python
"""The LTS paper's per-layer space searched end to end, timed: the block table, NSGA-II, the front timed whole.

    python -m benchmarks.per_layer_search                        # 6 generations of 36, seed 1
    python -m benchmarks.per_layer_search --generations 20 --population 100

What search.py does with ``--config configs/search-lts-paper.yaml`` and objectives composed from parts
(default ``non_embedding_params,onnx_latency_s``), on a fresh store: each generation's new block shapes timed as a
table (many per measuring child), its candidates composed from the table, and at the end the front's members timed
whole and the front taken again. Each phase is timed apart (table, candidates, front timed whole), with what it
measured: part shapes timed, candidates, members timed whole.

Writes benchmarks/results/per_layer_search.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmarks._cli import add_json_flag, add_threads_flag
from benchmarks._results import write_result
from lts.cost.evaluator import Evaluator
from lts.families import Arch
from lts.search.executors import LocalExecutor
from lts.search.job import SearchJob
from lts.search.loop import run_search
from lts.search.verify import measure_front_whole, read_verified

REPO = Path(__file__).resolve().parent.parent


class TimedEvaluator(Evaluator):
    """An Evaluator that adds up the seconds spent filling the table, and counts its parts."""

    table_seconds = 0.0
    table_parts = 0
    table_failed = 0

    def time_parts(self, items: Sequence[tuple[Arch, str]]) -> Iterator[tuple[tuple[Arch, str], str | None]]:
        t0 = time.perf_counter()
        for item, reason in super().time_parts(items):
            self.table_parts += 1
            self.table_failed += reason is not None
            yield item, reason
        self.table_seconds += time.perf_counter() - t0


def block_shapes(space: Any) -> int:
    """Distinct (n_embd, n_inner, n_head) blocks a GPT-2 space can hold (a head count must divide n_embd)."""
    return sum(d % h == 0 for d in space.n_embd for _ in space.n_inner for h in space.n_head)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The per-layer space searched as search.py does, on a fresh store, each phase timed: the result's row."""
    space = yaml.safe_load((REPO / "configs" / "search-lts-paper.yaml").read_text())["space"]
    with tempfile.TemporaryDirectory(prefix="lts-per-layer-") as tmp_name:
        tmp = Path(tmp_name)
        spec = SearchJob(space=space, objectives=tuple(args.objectives.split(",")), seq_len=args.seq_len,
                         threads=args.threads, generations=args.generations, population=args.population,
                         seed=args.seed, run_dir=str(tmp / "run"), models_dir=str(tmp / "models"),
                         assets_dir=str(tmp / "assets"), cache=str(tmp / "cache.sqlite"))
        evaluator = TimedEvaluator(spec.eval_settings(), spec.cache_path())
        settings, executor = spec.search_settings(), LocalExecutor(1)
        t0 = time.perf_counter()
        evaluator.calibrate()
        calibration_s = time.perf_counter() - t0
        results, front, _ = run_search(spec.search_space(), settings, evaluator, executor, tmp / "run",
                                       progress=args.progress)
        search_s = time.perf_counter() - t0 - calibration_s
        t1 = time.perf_counter()
        _, written, _ = measure_front_whole(results, settings, evaluator, executor, tmp / "run", args.progress)
        verify_s = time.perf_counter() - t1
        total_s = time.perf_counter() - t0
        timed_whole = sum(not r.cached for r in read_verified(tmp / "run").values())
    return {
        "candidates": len(results), "failed": sum(not r.ok for r in results),
        "block shapes in the space": block_shapes(spec.search_space()),
        "table parts timed": evaluator.table_parts, "table seconds": round(evaluator.table_seconds, 1),
        "candidates seconds": round(search_s - evaluator.table_seconds, 1),
        "front (composed)": len(front), "members timed whole": timed_whole, "front written": len(written),
        "front timed whole seconds": round(verify_s, 1), "calibration seconds": round(calibration_s, 1),
        "total seconds": round(total_s, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generations", type=int, default=6, help="NSGA-II generations (default %(default)s)")
    p.add_argument("--population", type=int, default=36, help="candidates per generation (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="search seed (default %(default)s)")
    p.add_argument("--objectives", default="non_embedding_params,onnx_latency_s",
                   help="objectives composed from parts (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per timed forward (default %(default)s)")
    add_threads_flag(p, "ONNX Runtime intra-op threads")
    p.add_argument("--progress", action="store_true", help="progress bars")
    add_json_flag(p, "per_layer_search")
    args = p.parse_args(argv)
    row = measure(args)
    print("  ".join(f"{k}={v}" for k, v in row.items()))
    write_result("per_layer_search", conditions={
        "space": "configs/search-lts-paper.yaml (the LTS paper's per-layer GPT-2 space)", "objectives": args.objectives,
        "latency": "composed: base + one block timing per layer, block shapes timed as a table; the front timed whole",
        "generations": args.generations, "population": args.population, "seed": args.seed, "seq_len": args.seq_len,
        "store": "fresh (every part measured in this run)"}, rows=[row], threads=args.threads, path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
