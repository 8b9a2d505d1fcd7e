#!/usr/bin/env python
"""How faithful costs composed from parts are: composed vs whole-graph measurement, one session, held-out architectures.

    python -m benchmarks.composition_fidelity                  # 12 + 12 architectures, seed 1
    python -m benchmarks.composition_fidelity --per-space 16 --seed 2

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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks._cli import add_json_flag, add_threads_flag
from benchmarks._results import write_result
from benchmarks._stats import fidelity
from lts.cost import probes
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.cost.feeds import block_feeds
from lts.cost.measure import measure_architecture
from lts.families import Arch
from lts.search.space import space_from_dict

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20
OBJECTIVES = ["non_embedding_params", "onnx_latency_s"]


def _part_memory(ctx: probes.ProbeContext) -> dict[str, int | None]:
    """Peak memory of the part in ``ctx.parts`` measured as the whole graph's is (session made, one forward)."""
    (part,) = ctx.parts
    feeds = ctx.token_feeds() if part == "base" else block_feeds(ctx.config.n_embd, ctx.settings.seq_len)
    return probes.forward_peak(ctx, part, feeds)[1]


def held_out(per_space: int, seed: int) -> list[tuple[str, Arch]]:
    """`per_space` architectures drawn uniformly (seed `seed`) from the default space, and as many from the LTS
    paper's per-layer space; (space name, architecture) each."""
    default = space_from_dict({})
    paper = space_from_dict(yaml.safe_load((REPO / "configs" / "search-lts-paper.yaml").read_text())["space"])
    out = []
    for name, space in (("default", default), ("per-layer", paper)):
        rng = np.random.default_rng(seed)
        seen: dict[str, Arch] = {}
        while len(seen) < per_space:
            arch = space.sample(rng)
            seen.setdefault(arch.archid, arch)
        out += [(name, a) for a in seen.values()]
    return out


def part_memory(config: Arch, settings: Any, target: Any, part: str) -> int:
    """Peak bytes of graph part `part` of `config`, measured by the "part_memory" probe in a fresh child."""
    m = measure_architecture(config, settings, target, ("part_memory",), parts=(part,))
    return m.get("part_memory")["bytes"]


def register_part_memory() -> None:
    """The "part_memory" probe, for this benchmark only: registered by main, never at import (a module imported
    by another must not change lts's registry)."""
    probes.register(probes.Probe("part_memory", "forward", _part_memory, order=40))


def measure(archs: list[tuple[str, Arch]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every architecture's latency and forward peak memory, whole and composed, at one calibration: its row."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="lts-fidelity-") as tmp:
        settings = EvalSettings.create(objectives=OBJECTIVES, seq_len=args.seq_len, threads=args.threads)
        composed = Evaluator(settings, Path(tmp) / "cache.sqlite")
        whole = composed.whole_graph_evaluator()
        assert whole is not None
        t0 = time.perf_counter()
        table = composed.untimed_parts([a for _, a in archs])
        failed = [reason for _, reason in composed.time_parts(table) if reason]
        print(f"table: {len(table)} part shapes timed in {time.perf_counter() - t0:.0f} s"
              + (f", {len(failed)} failed" if failed else ""), flush=True)
        m, target = settings.measure_settings, settings.target
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
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per objective and space (and all): Spearman of composed vs whole, median and worst |error|, median error."""
    return fidelity(rows, {"latency": ("latency composed (ms)", "latency whole (ms)"),
                           "memory": ("memory composed (MB)", "memory whole (MB)")}, ("default", "per-layer"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-space", type=int, default=12, help="architectures per space (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per forward (default %(default)s)")
    add_threads_flag(p, "ONNX Runtime intra-op threads")
    add_json_flag(p, "composition_fidelity")
    args = p.parse_args(argv)
    register_part_memory()
    rows = measure(held_out(args.per_space, args.seed), args)
    summary = summarize(rows)
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
