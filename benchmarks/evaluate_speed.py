#!/usr/bin/env python
"""What one ``lts evaluate`` of a fresh architecture costs, as a user runs it: a process each, an empty store.

    python -m benchmarks.evaluate_speed                    # 12 architectures of the default space, seed 1
    python -m benchmarks.evaluate_speed --per-space 6 --generation

Architectures: ``--per-space`` drawn uniformly (seeded) from search.py's default space (Archai's), as
benchmarks.composition_fidelity draws them. For each, ``python -m lts evaluate FOLDER --json`` runs in a fresh
process with a store of its own (nothing cached, nothing to compose from), without the generation objectives
unless ``--generation``: the whole forward graph measured once (peak memory and latency on one session, the
reference graph timed beside it as its calibration). Wall time is the process's, from start to exit (imports
included); ``eval_seconds`` is the measurement's, as the evaluator reports it.

Writes benchmarks/results/evaluate_speed.json: per architecture both seconds and the figures measured; the median
and the worst of each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._cli import add_json_flag, add_threads_flag
from benchmarks._results import write_result
from benchmarks.composition_fidelity import held_out

REPO = Path(__file__).resolve().parent.parent


def evaluate(folder: Path, store: Path, threads: int, seq_len: int, generation: bool) -> tuple[float, dict]:
    """(wall seconds, the JSON `lts evaluate` printed) of one evaluation in a fresh process."""
    argv = [sys.executable, "-m", "lts", "evaluate", str(folder), "--json", "--cache", str(store),
            "--threads", str(threads), "--seq-len", str(seq_len), *(() if generation else ("--no-generation",))]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"lts evaluate failed on {folder.name}: {proc.stderr.strip().splitlines()[-1:]}")
    return wall, json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-space", type=int, default=12, help="architectures of the default space (default "
                                                              "%(default)s)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per forward (default %(default)s)")
    p.add_argument("--generation", action="store_true", help="measure the generation objectives too (a second "
                                                             "child: the KV-cache graph)")
    add_threads_flag(p, "ONNX Runtime intra-op threads")
    add_json_flag(p, "evaluate_speed")
    args = p.parse_args(argv)
    archs = [a for space, a in held_out(args.per_space, args.seed) if space == "default"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="lts-evaluate-speed-") as tmp:
        for i, arch in enumerate(archs):
            folder = Path(tmp) / arch.archid
            arch.to_hf_config().save_pretrained(folder)
            wall, out = evaluate(folder, Path(tmp) / f"store-{i}.sqlite", args.threads, args.seq_len,
                                 args.generation)
            assert not out["cached"], "a fresh store served a result"
            rows.append({"archid": arch.archid, "n_layer": arch.n_layer, "n_embd": arch.n_embd,
                         "wall (s)": round(wall, 2), "eval_seconds": round(out["eval_seconds"], 2),
                         "latency (ms)": round(out["onnx_latency_s"] * 1e3, 1),
                         "memory (MB)": round(out["onnx_memory_mb"], 1)})
            print(f"{arch.archid} {arch.n_layer}x{arch.n_embd}: {wall:.1f} s wall, {out['eval_seconds']:.1f} s "
                  f"measuring", file=sys.stderr, flush=True)
    walls, evals = [r["wall (s)"] for r in rows], [r["eval_seconds"] for r in rows]
    summary = {"median_wall_s": round(float(np.median(walls)), 2), "max_wall_s": max(walls),
               "median_eval_seconds": round(float(np.median(evals)), 2), "max_eval_seconds": max(evals)}
    write_result("evaluate_speed", conditions={
        "architectures": f"{len(archs)} from the default space, uniform, seed {args.seed} (benchmarks."
                         "composition_fidelity's draw)",
        "seq_len": args.seq_len, "batch": 1, "precision": "fp32", "generation objectives": args.generation,
        "process": "python -m lts evaluate FOLDER --json, a fresh process and an empty store each"},
        rows=rows, summary=summary, threads=args.threads, path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
