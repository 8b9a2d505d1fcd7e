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
  independently, for the very file LTS measured.

Then: Spearman rank correlation and median absolute relative error of LTS vs reference,
for latency and memory. Exports are slow (seconds to a minute each), so they are kept in
``--ref-dir`` and reused; ``--export-only`` prepares them without timing anything.

    python benchmarks/evaluators.py                       # the whole table (~15-25 min on 2 cores)
    python benchmarks/evaluators.py --export-only         # just the reference exports
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lts.families.gpt2 import ArchConfig  # noqa: E402

ARCHS = [  # (n_layer, n_embd, n_inner, n_head): distinct block shapes, small to the largest
    (1, 128, 128, 2), (2, 192, 384, 4), (10, 128, 960, 2), (3, 256, 512, 4), (4, 320, 640, 8),
    (2, 960, 192, 2), (5, 384, 768, 8), (6, 448, 896, 8), (6, 512, 512, 8), (7, 576, 960, 4),
    (8, 640, 704, 8), (9, 768, 832, 4), (10, 896, 256, 2), (10, 960, 960, 8),
]


def export_reference(cfg: ArchConfig, path: Path) -> float:
    """Export the transformers model as a user would; return the export's wall time."""
    import torch
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg.to_hf_config()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # random values everywhere: nothing to fold away
            p.normal_(1.0 if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.0, 0.02)

    class NextTokenLogits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, logits_to_keep=1, use_cache=False).logits

    ids = torch.randint(0, cfg.vocab_size, (1, 64))
    seq = torch.export.Dim("seq", min=2, max=cfg.n_positions)
    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(NextTokenLogits(model), (ids,), str(tmp), dynamo=True, dynamic_shapes=({1: seq},),
                      external_data=False, verbose=False)
    os.replace(tmp, path)
    return time.perf_counter() - t0


WORKER = r"""
import sys, json, time, numpy as np, onnxruntime as ort
path, seq_len, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
from lts.cost.target import CPUTarget
ids = np.random.default_rng(0).integers(0, 50257, size=(1, seq_len), dtype=np.int64)
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
print("ready", rss(), flush=True)
sys.stdin.readline()
sess = CPUTarget(threads=threads).session(path)  # the session set-up LTS measures with
vocab = sess.get_outputs()[0].shape[-1]
ids = ids % (vocab if isinstance(vocab, int) else 50257)
sess.run(None, {"input_ids": ids})
print("mem_done", flush=True)
sys.stdin.readline()
sess.run(None, {"input_ids": ids})  # second warm-up run
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); sess.run(None, {"input_ids": ids}); times.append(time.perf_counter() - t0)
a = np.asarray(times)
print(json.dumps({"median_s": float(np.median(a)), "cv": float(a.std(ddof=1) / a.mean())}), flush=True)
"""


PAIRED = r"""
import sys, json, time, numpy as np
sys.path.insert(0, sys.argv[1])
from lts.cost.measure import feeds_for
from lts.cost.target import CPUTarget
paths, seq_len, threads, rounds = json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
target = CPUTarget(threads=threads)
sess = {k: target.session(p) for k, p in paths.items()}
feeds = {k: feeds_for(s, seq_len) for k, s in sess.items()}
for _ in range(2):
    for k in sess:
        sess[k].run(None, feeds[k])
times = {k: [] for k in sess}
for _ in range(rounds):  # interleaved: slow drift of the machine hits every graph alike
    for k in sess:
        time.sleep(0.05)  # let the previous session's spinning pool threads go idle first
        t0 = time.perf_counter(); sess[k].run(None, feeds[k]); times[k].append(time.perf_counter() - t0)
print(json.dumps({k: float(np.median(v)) for k, v in times.items()}))
"""


def paired_latency(cfg: ArchConfig, export: Path, tmp: Path, seq_len: int, threads: int, rounds: int) -> dict:
    """Median seconds of the export, LTS's whole graph and its two parts, timed round-robin in one process."""
    from lts.core.onnxgraph import tiled_weights, write_onnx
    from lts.families.gpt2.graph import forward_graph_spec

    paths = {"export": str(export)}
    for part in ("full", "base", "block"):
        paths[part] = str(tmp / f"paired-{part}.onnx")
        write_onnx(forward_graph_spec(cfg, part), paths[part], tiled_weights())
    out = subprocess.run([sys.executable, "-c", PAIRED, str(REPO), json.dumps(paths), str(seq_len), str(threads),
                          str(rounds)], capture_output=True, text=True, check=True)
    for part in ("full", "base", "block"):
        Path(paths[part]).unlink()
    t = json.loads(out.stdout)
    t["composed"] = t["base"] + cfg.n_layer * t["block"]
    return t


def measure_reference(path: Path, seq_len: int, threads: int, repeats: int) -> dict:
    """Latency (2 warm-up, median of `repeats`) and outside-sampled peak memory of an .onnx file."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(seq_len), str(threads), str(repeats),
                             str(REPO)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    kind, base = proc.stdout.readline().split()
    assert kind == "ready"
    base = int(base)
    p = psutil.Process(proc.pid)
    peak = p.memory_info().rss
    proc.stdin.write("go\n")
    proc.stdin.flush()
    import select

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


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: LTS's)")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs of each reference model")
    ap.add_argument("--ref-dir", default=os.path.join(tempfile.gettempdir(), "lts-reference-exports"))
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--skip-reference", action="store_true", help="only time LTS")
    ap.add_argument("--latency-mode", default="composed", choices=["composed", "full"])
    ap.add_argument("--archs", type=int, default=len(ARCHS), help="use the first N architectures of the set")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()

    from lts.core.onnxgraph import tiled_weights, write_onnx
    from lts.cost.evaluator import EvalSettings, Evaluator
    from lts.cost.target import cpu_fingerprint as hardware_fingerprint
    from lts.cost.target import default_threads
    from lts.families.gpt2.graph import forward_graph_spec

    threads = args.threads or default_threads()
    archs = [ArchConfig(*a) for a in ARCHS[: args.archs]]
    ref_dir = Path(args.ref_dir)
    ref_dir.mkdir(parents=True, exist_ok=True)

    if not args.skip_reference:
        for cfg in archs:
            path = ref_dir / f"{cfg.archid}.onnx"
            if not path.exists():
                secs = export_reference(cfg, path)
                print(f"exported {cfg.archid} {cfg.to_dict()} in {secs:.1f}s", file=sys.stderr, flush=True)
    if args.export_only:
        return 0

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = EvalSettings.create(latency_mode=args.latency_mode, seq_len=args.seq_len, threads=threads)
        evaluator = Evaluator(settings, Path(tmp) / "cache.sqlite")  # empty: every evaluation is fresh
        for cfg in archs:
            t0 = time.perf_counter()
            res = evaluator.evaluate(cfg)
            fresh = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = Evaluator(settings, Path(tmp) / "cache.sqlite").evaluate(cfg)
            cached_ms = (time.perf_counter() - t0) * 1e3
            assert again.cached and res.ok, res.status
            row = {"archid": cfg.archid, **cfg.to_dict(), "eval_s": fresh, "cached_ms": cached_ms,
                   "lts_latency_ms": res.onnx_latency_s * 1e3, "lts_cv": res.onnx_latency_cv,
                   "lts_memory_mb": res.onnx_memory_mb, "lts_memory_sampled_mb": res.onnx_memory_sampled_mb,
                   "file_mb": res.onnx_file_mb}
            # Memory, independently: the very file LTS measured, in a fresh process, RSS sampled from outside.
            own = Path(tmp) / f"{cfg.archid}.onnx"
            write_onnx(forward_graph_spec(cfg), own, tiled_weights())
            row["own_memory_mb"] = measure_reference(own, args.seq_len, threads, 1)["memory_mb"]
            own.unlink()
            if not args.skip_reference:
                export = ref_dir / f"{cfg.archid}.onnx"
                row["ref_memory_mb"] = measure_reference(export, args.seq_len, threads, 1)["memory_mb"]
                row["ref_file_mb"] = export.stat().st_size / 2**20
                paired = paired_latency(cfg, export, Path(tmp), args.seq_len, threads, args.repeats)
                row.update({f"paired_{k}_ms": v * 1e3 for k, v in paired.items()})
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    import onnxruntime
    import torch
    import transformers

    hw = hardware_fingerprint()
    print(f"\n## Evaluator benchmark — batch 1, seq_len {args.seq_len}, {threads} ONNX Runtime threads, "
          f"latency mode {args.latency_mode}")
    print(f"machine: {hw['cpu']}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}; "
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
    evals = [r["eval_s"] for r in rows]
    print(f"\nfresh evaluation: median {statistics.median(evals):.2f} s, max {max(evals):.2f} s; "
          f"cached: median {statistics.median(r['cached_ms'] for r in rows):.1f} ms")
    pairs = [("memory: LTS vs the same file measured from outside", "lts_memory_mb", "own_memory_mb")]
    if not args.skip_reference:
        pairs += [("memory: LTS vs the transformers export", "lts_memory_mb", "ref_memory_mb"),
                  ("latency, paired: composed (base + L x block) vs the export", "paired_composed_ms",
                   "paired_export_ms"),
                  ("latency, paired: LTS whole graph vs the export", "paired_full_ms", "paired_export_ms"),
                  ("latency: LTS evaluator as run (own protocol, other moment) vs paired export", "lts_latency_ms",
                   "paired_export_ms")]
    for what, ka, kb in pairs:
        a, b = [r[ka] for r in rows], [r[kb] for r in rows]
        errs = [abs(x / y - 1) for x, y in zip(a, b)]
        print(f"{what}: Spearman {spearman(a, b):.3f}, median |relative error| {statistics.median(errs):.1%}, "
              f"max {max(errs):.1%} (n={len(rows)})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
