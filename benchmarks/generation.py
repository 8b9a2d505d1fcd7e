#!/usr/bin/env python
"""Greedy decoding speed: transformers' ``generate`` (torch, KV cache) vs the ONNX Runtime KV-cache loop.

    python benchmarks/generation.py                      # 2x256, 4x384, 6x512; 128 new tokens
    python benchmarks/generation.py --sizes 6x512,12x768 --repeats 5 --threads 1

Models are GPT-2s randomly initialised here (vocab 50257, eos 50256, n_inner = 4 n_embd,
n_positions 1024): speed does not depend on the weights. Both backends decode the same
random prompt, batch 1, with the same thread count, eos disabled so every run makes exactly
`--new-tokens` tokens; one warm-up run each, then `--repeats` timed runs. The ONNX export
happens once per model (timed separately, in a temp cache) and is not part of the decode times.
Reports tokens/s (median run; prefill included), time to first token (median) and the
per-token latency after the first (p50/p90 over all timed runs), and checks that both
backends produced the same tokens.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        layers, embd = part.lower().split("x")
        sizes.append((int(layers), int(embd)))
    return sizes


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_model(n_layer: int, n_embd: int):
    import torch
    from transformers import GPT2LMHeadModel

    from lts.core.arch import ArchConfig

    n_head = 8 if n_embd % 8 == 0 else 4
    cfg = ArchConfig(n_layer, n_embd, 4 * n_embd, n_head, vocab_size=50257, n_positions=1024)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg.to_gpt2_config(bos_token_id=50256, eos_token_id=50256)).eval()
    return model, sum(p.numel() for p in model.parameters())


def time_runs(fn, repeats: int):
    """One warm-up, then `repeats` timed runs of fn(streamer) -> ids; (ids, [total s], [ttft s], [per-token s])."""
    from lts.generate import TimingStreamer

    fn(TimingStreamer())
    totals, firsts, per_token, ids = [], [], [], None
    for _ in range(repeats):
        timing = TimingStreamer()
        ids = fn(timing)
        totals.append(time.perf_counter() - timing.start)
        firsts.append(timing.times[0])
        per_token += list(np.diff(timing.times))
    return ids, totals, firsts, per_token


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="2x256,4x384,6x512", help="comma-separated LAYERSxN_EMBD (default %(default)s)")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="torch threads and ONNX Runtime intra-op threads (default min(2, cores))")
    args = p.parse_args(argv)

    import onnxruntime
    import torch
    import transformers
    from transformers import LogitsProcessorList
    from transformers.utils import logging as hf_logging

    from lts.cost.target import CPUTarget
    from lts.generate import GenerateSettings, generate_onnx, generate_torch
    from lts.generate.onnx_kv import OnnxKVModel, cached_kv_onnx

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    settings = GenerateSettings(model="-", tokenizer="-", prompt="-", max_new_tokens=args.new_tokens, greedy=True)
    rng = np.random.default_rng(0)
    prompt = torch.tensor(rng.integers(0, 50256, size=(1, args.prompt_len)), dtype=torch.long)

    print(f"# greedy decode, batch 1: prompt {args.prompt_len} tokens, {args.new_tokens} new tokens, "
          f"{args.repeats} timed runs after 1 warm-up, {args.threads} threads for both backends")
    print(f"# {cpu_name()}, {os.cpu_count()} cores visible, load average at start "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; python {platform.python_version()}, "
          f"torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}")
    print()
    print("| model | params | backend | tokens/s | time to first token | per-token p50 | per-token p90 | speed-up "
          "| same tokens |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    all_same = True
    with tempfile.TemporaryDirectory(prefix="lts-bench-onnx-") as cache:
        for n_layer, n_embd in parse_sizes(args.sizes):
            model, params = build_model(n_layer, n_embd)
            t0 = time.perf_counter()
            folder, _ = cached_kv_onnx(model, cache)
            export_s = time.perf_counter() - t0
            onnx_model = OnnxKVModel(folder, CPUTarget(threads=args.threads))
            runs = {
                "torch generate": lambda s, model=model: generate_torch(
                    model, prompt, settings, LogitsProcessorList(), None, 50256, s),
                "onnxruntime": lambda s, onnx_model=onnx_model: generate_onnx(
                    onnx_model, prompt, settings, LogitsProcessorList(), None, 50256, s),
            }
            results = {name: time_runs(fn, args.repeats) for name, fn in runs.items()}
            ids_torch = results["torch generate"][0]
            base_tps = None
            for name, (ids, totals, firsts, per_token) in results.items():
                assert ids.shape[1] == args.prompt_len + args.new_tokens, ids.shape
                tps = args.new_tokens / statistics.median(totals)
                base_tps = base_tps or tps
                same = bool(torch.equal(ids, ids_torch))
                all_same &= same
                print(f"| {n_layer}x{n_embd} | {params / 1e6:.1f}M | {name} | {tps:.1f} | "
                      f"{statistics.median(firsts) * 1000:.1f} ms | {np.percentile(per_token, 50) * 1000:.2f} ms | "
                      f"{np.percentile(per_token, 90) * 1000:.2f} ms | {tps / base_tps:.2f}x | "
                      f"{'yes' if same else 'NO'} |", flush=True)
            print(f"<!-- {n_layer}x{n_embd}: ONNX export {export_s:.1f} s (once per model, cached by content hash) -->",
                  flush=True)
    print()
    print(f"# load average at end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not all_same:
        print("ERROR: the backends' greedy tokens differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
