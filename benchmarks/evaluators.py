#!/usr/bin/env python
"""How fast and how faithful are LTS's evaluators? One table over a fixed set of architectures.

For each architecture of the set (small to the largest of the default space, every block
shape distinct so nothing is reused between them):

- LTS: wall time of a fresh evaluation (empty cache: params + latency + memory), then of a
  cached re-evaluation; latency, its CV, memory (kernel peak) and file size.
- Reference: the real model — ``torch.onnx.export(GPT2LMHeadModel, dynamo=True)`` with
  ``logits_to_keep=1`` and random weights — loaded by ONNX Runtime with the same threads.
  Latency is *paired*: the export, LTS's whole graph and LTS's two timed parts are loaded in
  one fresh process and run round-robin (2 warm-up rounds, median of 20), so the slow
  drifts of a shared VM hit all of them alike and the comparison measures the method, not
  the moment. Memory: peak RSS sampled from outside every millisecond over session creation
  + one forward in a fresh process, minus the RSS just before; done for the export and,
  independently, for the very file LTS measured. (Both fresh processes: benchmarks/_onnx_child.py.)

Then: Spearman rank correlation and median absolute relative error of LTS vs reference,
for latency and memory. Exports are slow (seconds to a minute each), so they are kept in
``--ref-dir`` and reused; ``--export-only`` prepares them without timing anything.

    python -m benchmarks.evaluators                       # the whole table (~15-25 min on 2 cores)
    python -m benchmarks.evaluators --export-only         # just the reference exports
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import onnxruntime
import psutil

from benchmarks._cli import add_json_flag
from benchmarks._results import write_result
from benchmarks._stats import spearman
from lts.core.onnxgraph import tiled_weights, write_onnx
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.cost.target import cpu_fingerprint, default_threads
from lts.families.gpt2 import ArchConfig
from lts.families.gpt2.graph import forward_graph_spec

# torch and transformers are imported inside the functions that use them: see "Measuring children" in
# benchmarks/__init__.py.
REPO = Path(__file__).resolve().parent.parent
CHILD = [sys.executable, "-m", "benchmarks._onnx_child"]  # run with cwd=REPO, where the package is
ARCHS = [  # (n_layer, n_embd, n_inner, n_head): distinct block shapes, small to the largest
    (1, 128, 128, 2), (2, 192, 384, 4), (10, 128, 960, 2), (3, 256, 512, 4), (4, 320, 640, 8),
    (2, 960, 192, 2), (5, 384, 768, 8), (6, 448, 896, 8), (6, 512, 512, 8), (7, 576, 960, 4),
    (8, 640, 704, 8), (9, 768, 832, 4), (10, 896, 256, 2), (10, 960, 960, 8),
]


def export_reference(cfg: ArchConfig, path: Path) -> float:
    """Export the transformers model as a user would; return the export's wall time."""
    import torch
    from transformers import GPT2LMHeadModel

    class NextTokenLogits(torch.nn.Module):  # the next token's logits only (logits_to_keep=1), as LTS's graph
        def __init__(self, m: GPT2LMHeadModel) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=input_ids, logits_to_keep=1, use_cache=False).logits

    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg.to_hf_config()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # random values everywhere: nothing to fold away
            p.normal_(1.0 if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.0, 0.02)
    ids = torch.randint(0, cfg.vocab_size, (1, 64))
    seq = torch.export.Dim("seq", min=2, max=cfg.n_positions)
    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(NextTokenLogits(model), (ids,), str(tmp), dynamo=True, dynamic_shapes=({1: seq},),
                      external_data=False, verbose=False)
    os.replace(tmp, path)
    return time.perf_counter() - t0


def paired_latency(cfg: ArchConfig, export: Path, tmp: Path, seq_len: int, threads: int, rounds: int) -> dict:
    """Median seconds of the export, LTS's whole graph and its two parts, timed round-robin in one process."""
    paths = {"export": str(export.resolve())}
    for part in ("full", "base", "block"):
        paths[part] = str((tmp / f"paired-{part}.onnx").resolve())
        write_onnx(forward_graph_spec(cfg, part), paths[part], tiled_weights())
    out = subprocess.run([*CHILD, "paired", json.dumps(paths), str(seq_len), str(threads), str(rounds)],
                         capture_output=True, text=True, check=True, cwd=REPO)
    for part in ("full", "base", "block"):
        Path(paths[part]).unlink()
    t = json.loads(out.stdout)
    t["composed"] = t["base"] + cfg.n_layer * t["block"]
    return t


def measure_reference(path: Path, seq_len: int, threads: int, repeats: int) -> dict:
    """Latency (2 warm-up, median of `repeats`) and outside-sampled peak memory of an .onnx file."""
    proc = subprocess.Popen([*CHILD, "memory", str(path.resolve()), str(seq_len), str(threads), str(repeats)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    kind, base = proc.stdout.readline().split()
    assert kind == "ready"
    base = int(base)
    p = psutil.Process(proc.pid)
    peak = p.memory_info().rss
    proc.stdin.write("go\n")
    proc.stdin.flush()
    while True:  # sample until the child says the forward is done
        peak = max(peak, p.memory_info().rss)
        if select.select([proc.stdout], [], [], 0.001)[0]:
            break
    line = proc.stdout.readline().strip()
    assert line == "mem_done", line
    peak = max(peak, p.memory_info().rss)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out = json.loads(proc.stdout.readline())
    proc.wait()
    out["memory_mb"] = (peak - base) / 2**20
    return out


def measure_arch(cfg: ArchConfig, evaluator: Evaluator, cache: Path, tmp: Path, args: argparse.Namespace,
                 threads: int) -> dict[str, Any]:
    """One architecture's row: LTS fresh (`evaluator`'s store, `cache`, does not hold it yet) and cached (a new
    Evaluator on that store), the same file measured from outside, and the reference."""
    t0 = time.perf_counter()
    res = evaluator.evaluate(cfg)
    fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = Evaluator(evaluator.settings, cache).evaluate(cfg)
    cached_ms = (time.perf_counter() - t0) * 1e3
    assert again.cached and res.ok, res.status
    row = {"archid": cfg.archid, **cfg.to_dict(), "eval_s": fresh, "cached_ms": cached_ms,
           "lts_latency_ms": res.onnx_latency_s * 1e3, "lts_cv": res.onnx_latency_cv,
           "lts_memory_mb": res.onnx_memory_mb, "lts_memory_sampled_mb": res.onnx_memory_sampled_mb,
           "file_mb": res.onnx_file_mb}
    # Memory, independently: the very file LTS measured, in a fresh process, RSS sampled from outside.
    own = tmp / f"{cfg.archid}.onnx"
    write_onnx(forward_graph_spec(cfg), own, tiled_weights())
    row["own_memory_mb"] = measure_reference(own, args.seq_len, threads, 1)["memory_mb"]
    own.unlink()
    if not args.skip_reference:
        export = Path(args.ref_dir) / f"{cfg.archid}.onnx"
        row["ref_memory_mb"] = measure_reference(export, args.seq_len, threads, 1)["memory_mb"]
        row["ref_file_mb"] = export.stat().st_size / 2**20
        paired = paired_latency(cfg, export, tmp, args.seq_len, threads, args.repeats)
        row.update({f"paired_{k}_ms": v * 1e3 for k, v in paired.items()})
    return row


def print_report(rows: list[dict[str, Any]], args: argparse.Namespace, threads: int) -> None:
    import torch  # for the versions
    import transformers

    print(f"\n## Evaluator benchmark — batch 1, seq_len {args.seq_len}, {threads} ONNX Runtime threads, "
          f"latency mode {args.latency_mode}")
    print(f"machine: {cpu_fingerprint()['cpu']}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}; "
          f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, transformers {transformers.__version__}; "
          f"reference = torch.onnx.export(dynamo=True), 2 warm-up, median of {args.repeats}\n")
    head = ("| arch (L, d, f, h) | eval s (fresh) | cached ms | LTS latency ms | CV | LTS memory MiB | "
            "same file, outside MiB | err | file MiB |")
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    if not args.skip_reference:
        head += " export memory MiB | LTS err | paired: export ms | whole graph ms | composed ms | composed err |"
        sep += "---:|---:|---:|---:|---:|---:|"
    print(head)
    print(sep)
    for r in rows:
        line = (f"| {r['n_layer']}, {r['n_embd']}, {r['n_inner']}, {r['n_head']} | {r['eval_s']:.2f} | "
                f"{r['cached_ms']:.1f} | {r['lts_latency_ms']:.1f} | {r['lts_cv']:.3f} | {r['lts_memory_mb']:.0f} | "
                f"{r['own_memory_mb']:.0f} | {r['lts_memory_mb'] / r['own_memory_mb'] - 1:+.1%} | {r['file_mb']:.0f} |")
        if not args.skip_reference:
            line += (f" {r['ref_memory_mb']:.0f} | {r['lts_memory_mb'] / r['ref_memory_mb'] - 1:+.1%} | "
                     f"{r['paired_export_ms']:.1f} | {r['paired_full_ms']:.1f} | {r['paired_composed_ms']:.1f} | "
                     f"{r['paired_composed_ms'] / r['paired_export_ms'] - 1:+.1%} |")
        print(line)


def agreement(rows: list[dict[str, Any]], skip_reference: bool) -> dict[str, str]:
    """Per comparison: Spearman and median and max |relative error| (printed, and the result's summary)."""
    evals = [r["eval_s"] for r in rows]
    print(f"\nfresh evaluation: median {statistics.median(evals):.2f} s, max {max(evals):.2f} s; "
          f"cached: median {statistics.median(r['cached_ms'] for r in rows):.1f} ms")
    pairs = [("memory: LTS vs the same file measured from outside", "lts_memory_mb", "own_memory_mb")]
    if not skip_reference:
        pairs += [("memory: LTS vs the transformers export", "lts_memory_mb", "ref_memory_mb"),
                  ("latency, paired: composed (base + L x block) vs the export", "paired_composed_ms",
                   "paired_export_ms"),
                  ("latency, paired: LTS whole graph vs the export", "paired_full_ms", "paired_export_ms"),
                  ("latency: LTS evaluator as run (own protocol, other moment) vs paired export", "lts_latency_ms",
                   "paired_export_ms")]
    summary = {}
    for what, ka, kb in pairs:
        a, b = [r[ka] for r in rows], [r[kb] for r in rows]
        errs = [abs(x / y - 1) for x, y in zip(a, b)]
        summary[what] = (f"Spearman {spearman(a, b):.3f}, median |relative error| {statistics.median(errs):.1%}, "
                         f"max {max(errs):.1%} (n={len(rows)})")
        print(f"{what}: {summary[what]}")
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: LTS's)")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs of each reference model")
    ap.add_argument("--ref-dir", default=os.path.join(tempfile.gettempdir(), "lts-reference-exports"))
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--skip-reference", action="store_true", help="only time LTS")
    ap.add_argument("--latency-mode", default="composed", choices=["composed", "full"])
    ap.add_argument("--archs", type=int, default=len(ARCHS), help="use the first N architectures of the set")
    add_json_flag(ap, "evaluators")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads or default_threads()
    archs = [ArchConfig(*a) for a in ARCHS[: args.archs]]
    Path(args.ref_dir).mkdir(parents=True, exist_ok=True)
    if not args.skip_reference:
        for cfg in archs:
            path = Path(args.ref_dir) / f"{cfg.archid}.onnx"
            if not path.exists():
                secs = export_reference(cfg, path)
                print(f"exported {cfg.archid} {cfg.to_dict()} in {secs:.1f}s", file=sys.stderr, flush=True)
    if args.export_only:
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = EvalSettings.create(latency_mode=args.latency_mode, seq_len=args.seq_len, threads=threads)
        cache = Path(tmp) / "cache.sqlite"
        evaluator = Evaluator(settings, cache)  # empty: every evaluation is fresh
        for cfg in archs:
            rows.append(measure_arch(cfg, evaluator, cache, Path(tmp), args, threads))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print_report(rows, args, threads)
    summary = agreement(rows, args.skip_reference)
    write_result("evaluators", conditions={
        "archs": len(archs), "seq_len": args.seq_len, "batch": 1, "latency_mode": args.latency_mode,
        "reference": None if args.skip_reference else
        f"torch.onnx.export(dynamo=True), paired with LTS's graphs: 2 warm-up, median of {args.repeats}"},
        rows=rows, summary=summary, threads=threads, path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
