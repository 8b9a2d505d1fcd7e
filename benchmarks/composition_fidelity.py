#!/usr/bin/env python
"""How faithful costs composed from parts are: composed vs whole-graph measurement, one session, held-out architectures.

    python benchmarks/composition_fidelity.py                  # 12 + 12 architectures, seed 1
    python benchmarks/composition_fidelity.py --per-space 16 --seed 2

Architectures: ``--per-space`` drawn uniformly (seeded) from search.py's default space (Archai's) and as many from
the LTS paper's per-layer space (configs/search-lts-paper.yaml). Nothing is fitted to them (a composition has no
parameters), so every one is held out.

For each, in one session and at one calibration of the reference graph:

- latency: what a search composes (``--latency-mode composed``: the embeddings-and-head part plus one block
  timing per layer, part timings stored by shape, here filled as a table first, as a search does) and the whole
  forward graph timed (``--latency-mode full``, what ``lts evaluate`` and the front's verification time);
- forward peak memory: the whole graph's (``onnx_memory_mb``'s probe, a fresh child) and the parts' composed the
  same way as latency: the embeddings-and-head part's peak plus one block part's peak per layer, each part's peak
  measured as the whole's is (a fresh child: session made, one forward at ``--seq-len``).

Writes benchmarks/results/composition_fidelity.json: every architecture's four figures and errors (composed / whole
- 1), and per objective and space Spearman's rank correlation and the median and worst |error|.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from _results import add_json_flag, write_result  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from lts.cost import probes  # noqa: E402
from lts.cost.evaluator import EvalSettings, Evaluator  # noqa: E402
from lts.cost.measure import block_feeds, measure_architecture  # noqa: E402
from lts.search.space import space_from_dict  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20


def _part_memory(ctx: probes.ProbeContext) -> dict[str, int | None]:
    """Peak memory of the part in ``ctx.parts`` measured as the whole graph's is (session made, one forward)."""
    (part,) = ctx.parts
    feeds = ctx.token_feeds() if part == "base" else block_feeds(ctx.config.n_embd, ctx.settings.seq_len)
    return probes.forward_peak(ctx, part, feeds)


probes.register(probes.Probe("part_memory", "forward", _part_memory, order=40))


def held_out(per_space: int, seed: int) -> list[tuple[str, object]]:
    default = space_from_dict({})
    paper = space_from_dict(yaml.safe_load((REPO / "configs" / "search-lts-paper.yaml").read_text())["space"])
    out = []
    for name, space in (("default", default), ("per-layer", paper)):
        rng = np.random.default_rng(seed)
        seen: dict[str, object] = {}
        while len(seen) < per_space:
            arch = space.sample(rng)
            seen.setdefault(arch.archid, arch)
        out += [(name, a) for a in seen.values()]
    return out


def part_memory(config, settings, target, part: str) -> int:
    m = measure_architecture(config, settings, target, ("part_memory",), parts=(part,))
    return m.get("part_memory")["bytes"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-space", type=int, default=12, help="architectures per space (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per forward (default %(default)s)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    add_json_flag(p, "composition_fidelity")
    args = p.parse_args()
    archs = held_out(args.per_space, args.seed)
    with tempfile.TemporaryDirectory(prefix="lts-fidelity-") as tmp:
        settings = EvalSettings.create(objectives=["non_embedding_params", "onnx_latency_s"], seq_len=args.seq_len,
                                       threads=args.threads)
        composed = Evaluator(settings, Path(tmp) / "cache.sqlite")
        whole = composed.whole_graph_evaluator()
        assert whole is not None
        t0 = time.perf_counter()
        table = composed.untimed_parts([a for _, a in archs])
        failed = [reason for _, reason in composed.time_parts(table) if reason]
        print(f"table: {len(table)} part shapes timed in {time.perf_counter() - t0:.0f} s"
              + (f", {len(failed)} failed" if failed else ""), flush=True)
        m, target = settings.measurement, settings.target
        rows = []
        for space, arch in archs:
            c, w = composed.evaluate(arch), whole.evaluate(arch)
            mem_whole = measure_architecture(arch, m, target, ("memory",), parts=()).get("memory")["bytes"]
            mem_parts = part_memory(arch, m, target, "base")
            for part, (_, layers) in arch.block_parts().items():
                mem_parts += layers * part_memory(arch, m, target, part)
            row = {"space": space, "archid": arch.archid, "n_layer": arch.n_layer, "n_embd": arch.n_embd,
                   "n_inner": arch.describe("n_inner"), "n_head": arch.describe("n_head"),
                   "latency whole (ms)": round(w.onnx_latency_s * 1e3, 2),
                   "latency composed (ms)": round(c.onnx_latency_s * 1e3, 2),
                   "latency error": round(c.onnx_latency_s / w.onnx_latency_s - 1, 4),
                   "memory whole (MB)": round(mem_whole / MIB, 1), "memory composed (MB)": round(mem_parts / MIB, 1),
                   "memory error": round(mem_parts / mem_whole - 1, 4)}
            rows.append(row)
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    summary = {}
    for objective, (comp, full) in {"latency": ("latency composed (ms)", "latency whole (ms)"),
                                    "memory": ("memory composed (MB)", "memory whole (MB)")}.items():
        for space in ("default", "per-layer", "all"):
            mine = [r for r in rows if space in ("all", r["space"])]
            errors = np.abs([r[f"{objective} error"] for r in mine])
            key = f"{objective}_{space.replace('-', '_')}"
            summary[f"{key}_spearman"] = round(float(spearmanr([r[comp] for r in mine],
                                                              [r[full] for r in mine]).statistic), 4)
            summary[f"{key}_median_abs_error"] = round(float(np.median(errors)), 4)
            summary[f"{key}_max_abs_error"] = round(float(np.max(errors)), 4)
            summary[f"{key}_median_error"] = round(float(np.median([r[f"{objective} error"] for r in mine])), 4)
    write_result("composition_fidelity", conditions={
        "architectures": f"{args.per_space} from the default space + {args.per_space} from the LTS paper's per-layer "
                         f"space (configs/search-lts-paper.yaml), uniform, seed {args.seed}",
        "seq_len": args.seq_len, "batch": 1, "precision": "fp32",
        "latency": "composed = base + one block timing per layer (timings per shape, each beside the reference graph) "
                   "vs the whole forward graph timed the same way; both at one calibration",
        "memory": "composed = the base part's peak + one block part's peak per layer, each part's peak measured as "
                  "the whole graph's (fresh child: session made + one forward)",
        "error": "composed / whole - 1"}, rows=rows, summary=summary, threads=args.threads, path=args.json)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
