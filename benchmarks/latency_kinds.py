#!/usr/bin/env python
"""What generation feels versus what one forward pass says: three latency kinds, and whether the search's
generation figures hold end to end.

    python -m benchmarks.latency_kinds kinds       # full forward vs prefill vs decode; composed vs whole decode
    python -m benchmarks.latency_kinds fidelity    # the evaluator's decode/generation figures vs generate_text.py

Architectures: ``--archs`` (default 12) drawn from the default space with a fixed seed, stratified
by depth so shallow-wide and deep-narrow models are both there; random weights (values do not
change the work).

kinds: each architecture is evaluated fresh (empty cache, composed full-forward latency at
seq_len 1024 + peak memory + the generation graph: one decoding step at ``--context`` and
generation memory), which also gives the evaluation time the search pays per candidate with the
decode objective. Then, in one process per architecture with the search's session options, the
generation graph is timed for a prefill of ``--context`` tokens and for one decoding step at
``--context``, and the decoding step of a 1- and a 2-layer model of the same shape, from which a
composed decode latency ``T1 + (L-1)(T2-T1)`` is compared with the whole graph's. Printed:
Spearman correlations between the kinds, and how many members the fronts of params x full-forward
latency and params x decode latency share among these architectures. Writes
benchmarks/results/latency_kinds.json.

fidelity: for each architecture, a model folder with random weights (a stand-in tokenizer with the
space's 50,257 ids) is run by the real ``generate_text.py --backend onnx --greedy`` up to
``--context`` tokens (a 16-token prompt), and its verbose line's decode step time (median of the
last 64 steps) and session + generation memory are compared with the evaluator's
``onnx_decode_latency_s`` and ``onnx_generation_memory_mb``, measured just before on the same
architecture (a fresh evaluator, its own calibration). ``--rounds`` rounds over the architectures
(default 3): this VM's speed moves tens of percent between minutes (two single rounds of the same 12
read Spearman 0.916 / median error 18.2 % and 0.965 / 9.1 %), so the per-architecture medians are
compared: Spearman and median relative error, and each round's alone. Writes
benchmarks/results/latency_fidelity.json.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._cli import add_json_flag
from benchmarks._results import machine_text, print_table, write_result
from benchmarks._stats import spearman
from lts.core.onnxgraph import tiled_weights, write_onnx
from lts.cost.evaluator import EvalResult, EvalSettings, Evaluator
from lts.cost.feeds import decode_feeds, prefill_feeds
from lts.cost.objectives import DEFAULT_OBJECTIVES
from lts.cost.settings import MeasureSettings
from lts.cost.target import CPUTarget
from lts.cost.timing import time_session
from lts.families.gpt2 import ArchConfig
from lts.families.gpt2.graph import kv_graph_spec
from lts.families.gpt2.space import SearchSpace
from lts.generate.decode import DECODE_WINDOW
from lts.search.fronts import pareto_front
from lts.train.tokenizer import builtin_english_text, train_bpe_tokenizer

REPO = Path(__file__).resolve().parent.parent
GENERATION_OBJECTIVES = ("onnx_decode_latency_s", "onnx_generation_memory_mb")  # on the generation graph
PROMPT_TOKENS = 16


def architectures(n: int, seed: int) -> list[ArchConfig]:
    """`n` distinct architectures of the default space, depths spread evenly over 1..10."""
    space = SearchSpace()
    rng = np.random.default_rng(seed)
    out: list[ArchConfig] = []
    for i in range(n):
        while True:
            genes = rng.integers(space.xl, space.xu + 1)
            genes[0] = round(i * (len(space.n_layer) - 1) / max(1, n - 1))
            config = space.decode(genes)
            if config.archid not in {c.archid for c in out}:
                out.append(config)
                break
    return out


def evaluate(configs: list[ArchConfig], context: int) -> list[EvalResult]:
    settings = EvalSettings.create(objectives=(*DEFAULT_OBJECTIVES, *GENERATION_OBJECTIVES), context=context)
    evaluator = Evaluator(settings, None)  # no cache: all fresh
    evaluator.calibrate()
    return [evaluator.compute(c) for c in configs]


def _kv_session(config: ArchConfig, target: CPUTarget, folder: str) -> Any:
    path = Path(folder) / f"{config.archid}.onnx"
    write_onnx(kv_graph_spec(config), path, tiled_weights())
    sess = target.session(path)
    path.unlink()
    return sess


def time_kinds(config: ArchConfig, context: int, settings: MeasureSettings, target: CPUTarget) -> dict[str, float]:
    """Prefill and decode of the whole generation graph, and decode of its 1- and 2-layer twins (same process)."""
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        whole = _kv_session(config, target, folder)
        out["prefill_s"] = time_session(whole, prefill_feeds(config, context), settings).median_s
        out["decode_s"] = time_session(whole, decode_feeds(config, context - 1), settings).median_s
        del whole
        for layers in (1, 2):
            twin = ArchConfig(layers, config.n_embd, config.n_inner, config.n_head, config.vocab_size,
                              config.n_positions)
            sess = _kv_session(twin, target, folder)
            out[f"decode_{layers}_s"] = time_session(sess, decode_feeds(twin, context - 1), settings).median_s
            del sess
    out["decode_composed_s"] = out["decode_1_s"] + (config.n_layer - 1) * (out["decode_2_s"] - out["decode_1_s"])
    return out


def kinds(args: argparse.Namespace) -> None:
    """Every architecture evaluated fresh, then its prefill and decode timed here; the tables, and the result."""
    configs = architectures(args.archs, args.seed)
    t0 = time.perf_counter()
    results = evaluate(configs, args.context)
    failed = [r for r in results if not r.ok]
    if failed:
        sys.exit(f"failed: {', '.join(f'{r.archid} {r.status}' for r in failed)}")
    settings, target = MeasureSettings(), CPUTarget()
    timed = [time_kinds(c, args.context, settings, target) for c in configs]
    print(f"\n## Latency kinds ({machine_text()}; {target.describe()}; full forward: seq_len {settings.seq_len}, "
          f"composed; prefill: {args.context} tokens; decode: one step with {args.context - 1} cached + 1; "
          f"{len(configs)} architectures, seed {args.seed}; {time.perf_counter() - t0:.0f} s)\n")
    rows = kinds_rows(configs, results, timed)
    summary = kinds_summary(results, timed)
    write_result("latency_kinds", conditions={
        "archs": len(configs), "seed": args.seed, "context": args.context, "seq_len": settings.seq_len,
        "full_forward": "composed", "prefill": f"{args.context} tokens",
        "decode": f"one step with {args.context - 1} cached + 1", "target": target.describe()},
        rows=rows, summary=summary, threads=target.threads, path=args.json)


def kinds_rows(configs: list[ArchConfig], results: list[EvalResult], timed: list[dict[str, float]]) -> list[dict]:
    """The architectures' table, printed, and its rows."""
    header = ["architecture (L x d / f / h)", "params (M)", "full forward (ms)", "prefill (ms)",
              "decode, evaluator (ms)", "decode, whole (ms)", "decode, composed 1+2 layers (ms)",
              "forward memory (MiB)", "generation memory (MiB)", "fresh evaluation (s)"]
    table = []
    for c, r, t in zip(configs, results, timed):
        ms = {k: v * 1e3 for k, v in t.items()}
        table.append([f"`{c.archid}` {c.n_layer}x{c.n_embd}/{c.n_inner}/{c.n_head}",
                      f"{r.non_embedding_params / 1e6:.2f}", f"{r.onnx_latency_s * 1e3:.1f}", f"{ms['prefill_s']:.1f}",
                      f"{r.onnx_decode_latency_s * 1e3:.2f}", f"{ms['decode_s']:.2f}",
                      f"{ms['decode_composed_s']:.2f}", f"{r.onnx_memory_mb:.0f}",
                      f"{r.onnx_generation_memory_mb:.0f}", f"{r.eval_seconds:.2f}"])
    print_table(header, table)
    return [dict(zip(header, row)) for row in table]


def kinds_summary(results: list[EvalResult], timed: list[dict[str, float]]) -> dict[str, Any]:
    """How the kinds rank the architectures alike, the fronts they make, the composed decode's error (printed)."""
    full = [r.onnx_latency_s for r in results]
    decode = [r.onnx_decode_latency_s for r in results]
    prefill = [t["prefill_s"] for t in timed]
    whole = [t["decode_s"] for t in timed]
    composed_err = [abs(t["decode_composed_s"] / t["decode_s"] - 1) for t in timed]
    pairs = {"full forward vs prefill": spearman(full, prefill), "full forward vs decode": spearman(full, decode),
             "prefill vs decode": spearman(prefill, decode),
             "decode: evaluator vs whole graph timed here": spearman(decode, whole)}
    print()
    print_table(["pair", "Spearman"], [[name, f"{rho:.3f}"] for name, rho in pairs.items()])
    fronts = [{r.archid for r in pareto_front(results, ("non_embedding_params", name))}
              for name in ("onnx_latency_s", "onnx_decode_latency_s")]
    print(f"\nfronts among these {len(results)}: params x full forward {len(fronts[0])} members, params x decode "
          f"{len(fronts[1])}, shared {len(fronts[0] & fronts[1])}")
    print(f"composed decode (1- and 2-layer twins) vs whole graph: median |error| "
          f"{statistics.median(composed_err):.1%}, max {max(composed_err):.1%}")
    seconds = [r.eval_seconds for r in results]
    print(f"fresh evaluation with the generation graph: median {statistics.median(seconds):.2f} s, "
          f"max {max(seconds):.2f} s")
    return {**{f"Spearman, {name}": round(rho, 4) for name, rho in pairs.items()},
            "front, params x full forward": len(fronts[0]), "front, params x decode": len(fronts[1]),
            "fronts shared": len(fronts[0] & fronts[1]),
            "composed decode median |error|": round(statistics.median(composed_err), 4),
            "composed decode max |error|": round(max(composed_err), 4),
            "fresh evaluation median s": round(statistics.median(seconds), 2)}


def stand_in_tokenizer(folder: Path, vocab_size: int) -> None:
    """A byte-level BPE trained on local text, padded with unused tokens to the space's vocabulary size."""
    tok = train_bpe_tokenizer(builtin_english_text().split("\n\n"), vocab_size=8192)
    tok.add_tokens([f"<unused_{i}>" for i in range(vocab_size - len(tok))])
    assert len(tok) == vocab_size
    tok.save_pretrained(folder)


VERBOSE = re.compile(r"decode step ([0-9.]+) ms at (\d+) tokens.*?session \+ generation memory ([0-9.]+) MiB")


def fidelity(args: argparse.Namespace) -> None:
    import torch  # here, not at the top: see "Measuring children" in benchmarks/__init__.py
    from transformers import GPT2LMHeadModel

    configs = architectures(args.archs, args.seed)
    threads = CPUTarget().threads
    # per architecture, one (evaluator decode s, evaluator memory MiB, generate_text step s, its memory MiB,
    # tokens) per round
    runs: dict[str, list[tuple[float, float, float, float, int]]] = {c.archid: [] for c in configs}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        stand_in_tokenizer(tok_dir, configs[0].vocab_size)
        for config in configs:
            folder = Path(tmp) / config.archid
            torch.manual_seed(0)
            GPT2LMHeadModel(config.to_hf_config()).save_pretrained(folder)
            for f in tok_dir.iterdir():
                shutil.copy(f, folder / f.name)
        prompt = " ".join(["the"] * PROMPT_TOKENS)
        for round_ in range(args.rounds):  # the VM's speed moves tens of percent between minutes: medians of rounds
            for config in configs:
                ev = evaluate([config], args.context)[0]  # fresh, its own calibration, just before generate_text
                folder = Path(tmp) / config.archid
                cmd = [sys.executable, str(REPO / "generate_text.py"), str(folder), str(folder), prompt,
                       "--backend", "onnx", "--greedy", "--max-new-tokens", str(args.context - PROMPT_TOKENS),
                       "--threads", str(threads), "--onnx-cache-dir", str(Path(tmp) / "onnx"), "-v"]
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                m = VERBOSE.search(r.stderr)
                if r.returncode or not m:
                    sys.exit(f"{config.archid}: generate_text.py failed: {r.stderr.strip()[-500:]}")
                runs[config.archid].append((ev.onnx_decode_latency_s, ev.onnx_generation_memory_mb,
                                            float(m.group(1)) / 1e3, float(m.group(3)), int(m.group(2))))
            print(f"round {round_ + 1}/{args.rounds} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    med = {archid: [statistics.median(r[k] for r in rs) for k in range(4)] + [min(r[4] for r in rs)]
           for archid, rs in runs.items()}
    rows, json_rows = [], []
    for config in configs:
        ev_s, ev_mb, step_s, memory_mb, tokens = med[config.archid]
        json_rows.append({"archid": config.archid, "n_layer": config.n_layer, "n_embd": config.n_embd,
                          "n_inner": config.n_inner, "n_head": config.n_head,
                          "decode_step_evaluator_ms": round(ev_s * 1e3, 3),
                          "decode_step_generate_text_ms": round(step_s * 1e3, 3),
                          "decode_difference": round(ev_s / step_s - 1, 4),
                          "generation_memory_evaluator_mib": round(ev_mb, 1),
                          "generation_memory_generate_text_mib": round(memory_mb, 1),
                          "memory_difference": round(ev_mb / memory_mb - 1, 4), "tokens_reached": tokens,
                          "rounds_decode_difference": [round(r[0] / r[2] - 1, 4) for r in runs[config.archid]]})
        rows.append([f"`{config.archid}` {config.n_layer}x{config.n_embd}/{config.n_inner}/{config.n_head}",
                     f"{ev_s * 1e3:.2f}", f"{step_s * 1e3:.2f}", f"{ev_s / step_s - 1:+.1%}",
                     " ".join(f"{r[0] / r[2] - 1:+.0%}" for r in runs[config.archid]), f"{ev_mb:.0f}",
                     f"{memory_mb:.0f}", f"{ev_mb / memory_mb - 1:+.1%}", tokens])
    print(f"\n## Search figures vs generate_text.py --backend onnx ({machine_text()}; {threads} threads; greedy, "
          f"{PROMPT_TOKENS}-token prompt, decoded to {args.context} tokens; {len(configs)} architectures, seed "
          f"{args.seed}; medians of {args.rounds} rounds; {time.perf_counter() - t0:.0f} s)\n")
    print_table(["architecture", "decode step, evaluator (ms)", "decode step, generate_text (ms)", "difference",
                "difference per round", "generation memory, evaluator (MiB)",
                "session + generation memory, generate_text (MiB)", "difference", "tokens reached"], rows)

    def agreement(pairs: list[tuple[float, float]]) -> tuple[float, float]:
        return (spearman([a for a, _ in pairs], [b for _, b in pairs]),
                statistics.median(abs(a / b - 1) for a, b in pairs))

    lat = agreement([(v[0], v[2]) for v in med.values()])
    mem = agreement([(v[1], v[3]) for v in med.values()])
    per_round = [agreement([(rs[k][0], rs[k][2]) for rs in runs.values()]) for k in range(args.rounds)]
    print(f"\ndecode latency: Spearman {lat[0]:.3f}, median |error| {lat[1]:.1%}; generation memory: Spearman "
          f"{mem[0]:.3f}, median |error| {mem[1]:.1%}")
    print("decode latency, each round alone: " + "; ".join(f"Spearman {r:.3f}, median |error| {e:.1%}"
                                                         for r, e in per_round))
    write_result("latency_fidelity", conditions={
        "archs": len(configs), "seed": args.seed, "context": args.context, "prompt_tokens": PROMPT_TOKENS,
        "rounds": args.rounds, "decode_step": f"generate_text.py -v: median of the last {DECODE_WINDOW} steps",
        "greedy": True, "seconds": round(time.perf_counter() - t0, 1)}, rows=json_rows, threads=threads, summary={
        "decode_spearman": round(lat[0], 4), "decode_median_abs_error": round(lat[1], 4),
        "memory_spearman": round(mem[0], 4), "memory_median_abs_error": round(mem[1], 4),
        "decode_per_round": [{"spearman": round(r, 4), "median_abs_error": round(e, 4)} for r, e in per_round]},
        path=args.json)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("what", choices=["kinds", "fidelity"])
    p.add_argument("--archs", type=int, default=12, help="architectures (default 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--context", type=int, default=512, help="KV-cache tokens (default 512, the search's default)")
    p.add_argument("--rounds", type=int, default=3, help="fidelity: rounds over the architectures, each evaluating "
                   "one fresh and then running generate_text.py on it; medians are compared (default 3)")
    add_json_flag(p, "latency_fidelity", "; kinds: latency_kinds.json")
    args = p.parse_args(argv)
    if args.archs < 2 or args.rounds < 1 or not 1 + PROMPT_TOKENS < args.context <= 1024:
        p.error(f"--archs must be >= 2, --rounds >= 1 and --context in {PROMPT_TOKENS + 2}..1024")
    kinds(args) if args.what == "kinds" else fidelity(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
