#!/usr/bin/env python
"""Llama's generation graph with its fused layer against the exported one: decode speed, load time and memory.

    python -m benchmarks.llama_layer                   # SmolLM2-135M's and SmolLM2-360M's shapes, 2 threads
    python -m benchmarks.llama_layer --rounds 3 --steps 10

LTS's Llama generation graph (``lts/families/llama/graph.py``) splices an exported prologue and head around one
layer per decoder layer. The layer is either ``fused`` (written with ONNX's RMSNormalization, RotaryEmbedding and
Attention, the default) or ``exported`` (transformers' eager ``LlamaDecoderLayer`` through torch's exporter, the
reference). Both graphs of a shape are written with the same weights (``tiled_weights``, as the search's) and must
give the same logits (checked here on every timed input); then, in one process, their sessions are timed in
interleaved rounds (``--rounds`` rounds of ``--steps`` runs each, after a warm-up): a decode step at contexts 128
and 512 (batch 1) and 128 (batch 4), and a 128-token prefill. Memory: a fresh spawned process per graph loads it
(the search's session options and glibc mmap threshold), runs the search's generation-memory workload to a
192-token context (``lts.cost.feeds.generate_to_context``: a 16-token prompt, then decode steps), and reports its
peak resident memory (``VmHWM``) over the RSS before loading; the load time is that session's. The timed inputs
are the search's too (``lts.cost.feeds``).

Writes benchmarks/results/llama_layer.json (page: docs/results/llama-layer.md).
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue as queue_module
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._cli import add_threads_flag
from benchmarks._results import print_table, write_result
from lts.core import procs
from lts.core.onnxgraph import tiled_weights, write_onnx
from lts.cost.feeds import decode_feeds, generate_to_context, prefill_feeds
from lts.cost.target import CPUTarget
from lts.families.llama import LlamaArch
from lts.families.llama.graph import KV_LAYERS, kv_graph_spec

MIB = 2**20
SHAPES = {  # the published models' shapes (their config.json), random weights here
    "smollm2-135m": LlamaArch(hidden_size=576, num_hidden_layers=30, intermediate_size=1536, num_attention_heads=9,
                              num_key_value_heads=3, vocab_size=49152, rope_theta=100000.0),
    "smollm2-360m": LlamaArch(hidden_size=960, num_hidden_layers=32, intermediate_size=2560, num_attention_heads=15,
                              num_key_value_heads=5, vocab_size=49152, rope_theta=100000.0),
}
CONTEXT = 192  # tokens in the cache at the end of the memory workload
CASES = (("decode", 1, 128), ("decode", 1, 512), ("decode", 4, 128), ("prefill", 1, 128))  # kind, batch, tokens


def session(path: Path, threads: int) -> Any:
    return CPUTarget(threads=threads).session(path)


def feeds(arch: LlamaArch, kind: str, batch: int, tokens: int) -> dict[str, np.ndarray]:
    """The search's own inputs (``lts.cost.feeds``): a prompt of `tokens` tokens, or one token after a cache of
    `tokens` positions."""
    return prefill_feeds(arch, tokens) if kind == "prefill" else decode_feeds(arch, tokens, batch)


def peak_child(path: str, threads: int, arch: LlamaArch, queue: Any) -> None:
    """In a fresh process: the peak RSS over the RSS before loading, for a load and the search's generation-memory
    workload to a context of :data:`CONTEXT` tokens (``lts.cost.feeds.generate_to_context``)."""
    procs.fix_mmap_threshold()
    base = procs.rss_bytes()
    procs.reset_peak_rss()
    t0 = time.perf_counter()
    sess = session(Path(path), threads)
    load = time.perf_counter() - t0
    generate_to_context(sess, arch, CONTEXT)
    queue.put((load, (procs.peak_rss_bytes() - base) / MIB))


def peak(path: Path, threads: int, arch: LlamaArch) -> tuple[float, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=peak_child, args=(str(path), threads, arch, queue))
    proc.start()
    while True:  # a child that dies (out of memory) puts nothing: say so instead of waiting
        try:
            result = queue.get(timeout=1)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise SystemExit(f"measuring {path.name} failed: its process exited with {proc.exitcode}") from None
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"of {', '.join(SHAPES)} (default: all)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    parser.add_argument("--steps", type=int, default=20, help="runs per variant a round (default: 20)")
    add_threads_flag(parser, "ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    names = args.shapes.split(",")
    if unknown := [n for n in names if n not in SHAPES]:
        parser.error(f"unknown shape {unknown[0]!r}: choose from {', '.join(SHAPES)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lts-llama-layer-") as tmp:
        for name in names:
            arch = SHAPES[name]
            paths = {}
            for layer in KV_LAYERS:
                paths[layer] = Path(tmp) / f"{name}-{layer}.onnx"
                write_onnx(kv_graph_spec(arch, layer), paths[layer], tiled_weights(seed=0))
            memory = {layer: peak(path, args.threads, arch) for layer, path in paths.items()}
            sessions = {layer: session(path, args.threads) for layer, path in paths.items()}
            for kind, batch, tokens in CASES:
                f = feeds(arch, kind, batch, tokens)
                outs = {layer: s.run(None, f)[0] for layer, s in sessions.items()}
                diff = float(np.abs(outs["fused"] - outs["exported"]).max())
                if diff > 1e-3:
                    raise SystemExit(f"{name} {kind}: the two graphs' logits differ by {diff}")
                times: dict[str, list[float]] = {layer: [] for layer in sessions}
                for s in sessions.values():  # warm-up
                    for _ in range(3):
                        s.run(None, f)
                for _ in range(args.rounds):
                    for layer, s in sessions.items():
                        for _ in range(args.steps):
                            t0 = time.perf_counter()
                            s.run(None, f)
                            times[layer].append(time.perf_counter() - t0)
                ms = {layer: 1e3 * float(np.median(t)) for layer, t in times.items()}
                rows.append({"shape": name, "kind": kind, "batch": batch,
                             "context" if kind == "decode" else "prompt": tokens,
                             "exported (ms)": round(ms["exported"], 2), "fused (ms)": round(ms["fused"], 2),
                             "speed-up": round(ms["exported"] / ms["fused"], 2), "max |logit diff|": diff})
            rows.append({"table": "load and memory", "shape": name,
                         **{f"{layer} load (s)": round(memory[layer][0], 2) for layer in KV_LAYERS},
                         **{f"{layer} peak (MiB)": round(memory[layer][1], 1) for layer in KV_LAYERS}})
            del sessions
    timed = [r for r in rows if "table" not in r]
    print_table(list(timed[0]), [list(r.values()) for r in timed])
    write_result("llama_layer", conditions={"shapes": names, "rounds": args.rounds, "steps": args.steps,
                                            "cases": [list(c) for c in CASES], "weights": "tiled_weights(seed=0)",
                                            "statistic": "median of rounds x steps runs",
                                            "memory": f"peak RSS over the RSS before loading: load + the "
                                                      f"search's generation-memory workload to context {CONTEXT} "
                                                      "(lts.cost.feeds.generate_to_context), a fresh process "
                                                      "per graph"},
                 rows=rows, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
