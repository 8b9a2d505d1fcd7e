#!/usr/bin/env python
"""Greedy decoding speed: transformers' ``generate``, LTS's ONNX Runtime KV-cache loop (fp32, int8) and Optimum.

    python -m benchmarks.generation                      # 2x256, 4x384, 6x512; 128 new tokens
    python -m benchmarks.generation --sizes 6x512 --vocab 4096 --rounds 3 --threads 2
    python -m benchmarks.generation --sizes 6x512 --no-optimum --batches ''

Models are GPT-2s randomly initialised here (vocab ``--vocab``, eos = the last id, n_inner =
4 n_embd, n_positions 1024): speed does not depend on the weights. Every backend decodes the
same random prompt, batch 1, with the same thread count, eos disabled so every run makes exactly
`--new-tokens` tokens. The backends are interleaved: ``--rounds`` rounds, each timing every
backend (1 warm-up in the first round, then ``--repeats`` timed runs), so a drift of the
machine's speed falls on all of them. The ONNX export happens once per model (timed separately,
in a temp cache) and is not part of the decode times. Reports tokens/s (median run; prefill
included), time to first token (median) and the per-token latency after the first (p50/p90
over all timed runs), and checks that the fp32 backends produced the same tokens as transformers
(int8: ``--precision int8``'s graph, the weight matrices quantized by ONNX Runtime; how many tokens
agree is shown, on random models it says little about quality: see benchmarks/int8_quality.py).

The peers: Hugging Face Optimum's ``ORTModelForCausalLM`` (optimum-onnx), which pins transformers
< 5, so it runs in a virtual environment of its own, made on first use (``benchmarks/optimum_peer.py``,
``--optimum-venv``; ``--no-optimum`` leaves it out): the model saved by ``save_pretrained``,
exported by Optimum, the same ONNX Runtime version and session options. And CTranslate2's
``Generator`` (``benchmarks/ctranslate2_peer.py``, its own venv too, ``--ctranslate2-venv``;
``--no-ctranslate2`` leaves it out): the saved model converted by its ``TransformersConverter``, loaded
with ``compute_type`` float32 (against LTS's fp32 graph) or int8 (int8 weights, float32 activations:
against LTS's int8 graph), the same thread count, greedy, eos disabled.

The roofline: decoding one token reads every weight matrix once (the blocks, and the tied LM
head: the whole ``vocab x n_embd`` embedding), one row of the embeddings, and the KV cache, so
at batch 1 a step cannot beat ``bytes read per token / memory bandwidth`` (the memory-bus ceiling on
tokens/s: read bandwidth / bytes per token, shown beside each backend). The bandwidth is
measured here, with the same thread count (torch reductions over a 512 MiB float32 array
that no cache holds: read-only, like weights; and a STREAM-style triad ``a = b + s c``: two
reads and a write). Per model and backend: bytes read per token (weights + the mean KV cache
over the run), achieved GB/s (tokens/s x bytes), and the fraction of the read ceiling.

Batches (``--batches 1,4,16``): B random prompts decoded together (one weight read serves B
tokens), torch, LTS's ONNX backends and CTranslate2 (float32, int8), ``--rounds`` rounds interleaved
as above, tokens/s over all rows (median run), whether every fp32 row is transformers' row, and the
share of int8 tokens equal to transformers'.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
import transformers
from onnx import numpy_helper
from transformers import LogitsProcessorList
from transformers.utils import logging as hf_logging

from benchmarks import ctranslate2_peer, optimum_peer
from benchmarks._cli import add_json_flag, add_threads_flag
from benchmarks._models import build_model, model_from_folder, parse_sizes
from benchmarks._results import cpu_model, write_result
from lts.core.errors import LTSError
from lts.cost.target import CPUTarget
from lts.families import load_arch
from lts.generate import GenerateSettings, TimingStreamer, generate_onnx, generate_torch
from lts.generate.onnx_kv import OnnxKVModel, cached_kv_onnx

OPTIMUM = "optimum ORTModelForCausalLM"
CT2 = {"ctranslate2": "float32", "ctranslate2 int8": "int8"}  # backend name -> CTranslate2 compute_type
TORCH = "torch generate"


def bandwidth(threads: int, mib: int = 512, repeats: int = 7) -> tuple[float, float]:
    """(read GB/s, triad GB/s), medians of `repeats`, with `threads` torch threads; 1 GB = 1e9 bytes."""
    torch.set_num_threads(threads)
    n = mib * 2**20 // 4
    a, b, c = torch.ones(n), torch.ones(n), torch.ones(n)
    reads, triads = [], []
    for _ in range(repeats + 1):  # the first pass pages the arrays in
        t0 = time.perf_counter()
        b.sum()
        reads.append(4 * n / (time.perf_counter() - t0) / 1e9)
        t0 = time.perf_counter()
        torch.add(b, c, alpha=0.5, out=a)
        triads.append(3 * 4 * n / (time.perf_counter() - t0) / 1e9)
    return statistics.median(reads[1:]), statistics.median(triads[1:])


def graph_bytes_per_token(folder: Path, kv_width: int, prompt: int, new: int) -> float:
    """Bytes a decode step of the ONNX graph in `folder` reads: every initializer in full, except those only
    looked up by Gather (embeddings: one row per token), + the mean KV cache over the run (float32; `kv_width`: the
    keys' floats per token summed over the layers, n_layer x n_embd for GPT-2, less with grouped KV heads)."""
    proto = onnx.load(str(folder / "model.onnx"))
    users: dict[str, set[str]] = {}
    for node in proto.graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    total = 0.0
    for init in proto.graph.initializer:
        arr = numpy_helper.to_array(init)
        lookup_only = users.get(init.name) == {"Gather"} and arr.ndim == 2
        total += arr[0].nbytes if lookup_only else arr.nbytes
    return total + 2 * kv_width * (prompt + (new - 1) / 2) * 4


def time_runs(fn: Callable[[Any], Any], repeats: int, warm_up: bool = True) -> tuple[Any, list, list, list]:
    """(One warm-up, then) `repeats` timed runs of fn(streamer) -> ids; (ids, [total s], [ttft s], [per-token s])."""
    if warm_up:
        fn(TimingStreamer())
    totals, firsts, per_token, ids = [], [], [], None
    for _ in range(repeats):
        timing = TimingStreamer()
        ids = fn(timing)
        totals.append(time.perf_counter() - timing.start)
        firsts.append(timing.times[0])
        per_token += list(np.diff(timing.times))
    return ids, totals, firsts, per_token


def runners(backends: dict, ids: torch.Tensor, settings: GenerateSettings, pad: int) -> dict:
    """name -> fn(streamer) decoding `ids` greedily on that backend (torch model or OnnxKVModel)."""
    def one(name: str, model: Any) -> Callable[[Any], Any]:
        decode = generate_torch if name == TORCH else generate_onnx
        return lambda streamer: decode(model, ids, settings, LogitsProcessorList(), None, pad, streamer)

    return {name: one(name, model) for name, model in backends.items()}


@dataclass(frozen=True)
class Peers:
    """The peers' venv pythons (None: left out)."""

    optimum: Path | None
    ctranslate2: Path | None

    def batch1(self) -> list[str]:
        """The peers' backend names in the batch-1 table."""
        return [*([OPTIMUM] if self.optimum else []), *(CT2 if self.ctranslate2 else [])]

    def batches(self) -> list[str]:
        """The peers' backend names in the batch table (Optimum decodes batch 1 only)."""
        return list(CT2) if self.ctranslate2 else []


def start_peers(args: argparse.Namespace) -> Peers:
    """Each peer's venv, made on first use, unless left out."""
    def log(line: str) -> None:
        print(line, file=sys.stderr)

    return Peers(None if args.no_optimum else optimum_peer.ensure_venv(args.optimum_venv, log=log),
                 None if args.no_ctranslate2 else ctranslate2_peer.ensure_venv(args.ctranslate2_venv, log=log))


@dataclass
class Measured:
    """One model's backends and what a decode step reads on each."""

    label: str
    params: int
    model: Any  # the torch model
    backends: dict[str, Any]  # LTS's own backends: name -> torch model or OnnxKVModel
    read: dict[str, float]  # every backend's bytes read per token
    export_s: float
    model_dir: Path  # the model saved for the peers


def prepare(make: Callable[[], tuple[Any, int, str]], kv_width: int, cache: str,
            args: argparse.Namespace, peers: Peers) -> Measured:
    """The model, its fp32 and int8 KV graphs (exported once, the export timed) and, for the peers, its folder."""
    model, params, label = make()
    t0 = time.perf_counter()
    folder, _ = cached_kv_onnx(model, cache)
    export_s = time.perf_counter() - t0
    onnx_model = OnnxKVModel(folder, CPUTarget(threads=args.threads))
    int8_folder, _ = cached_kv_onnx(model, cache, precision="int8")
    int8_model = OnnxKVModel(int8_folder, CPUTarget(threads=args.threads))
    fp32_bytes = graph_bytes_per_token(folder, kv_width, args.prompt_len, args.new_tokens)
    int8_bytes = graph_bytes_per_token(int8_folder, kv_width, args.prompt_len, args.new_tokens)
    # torch, Optimum and CTranslate2 float32 read the same fp32 weights as the fp32 graph; CTranslate2
    # int8 about the int8 graph's (int8 matrices, the embeddings' rows looked up)
    read = {TORCH: fp32_bytes, "onnxruntime": fp32_bytes, "onnxruntime int8": int8_bytes,
            OPTIMUM: fp32_bytes, "ctranslate2": fp32_bytes, "ctranslate2 int8": int8_bytes}
    model_dir = Path(cache) / f"hf-{label.split()[0]}"
    if peers.optimum or peers.ctranslate2:
        model.save_pretrained(model_dir)
    return Measured(label, params, model, {TORCH: model, "onnxruntime": onnx_model, "onnxruntime int8": int8_model},
                    read, export_s, model_dir)


def ct2_run(peers: Peers, m: Measured, name: str, prompts: torch.Tensor, args: argparse.Namespace) -> dict:
    """CTranslate2 at backend `name`'s compute type on `prompts` (B, S): its worker's JSON."""
    return ctranslate2_peer.run_ctranslate2(peers.ctranslate2, m.model_dir, prompts.tolist(), args.new_tokens,
                                            args.threads, args.repeats, CT2[name], eos_token_id=args.vocab - 1)


def time_batch1(m: Measured, prompt: torch.Tensor, settings: GenerateSettings, args: argparse.Namespace,
                peers: Peers) -> tuple[dict[str, list], dict[str, list]]:
    """Every backend on `prompt`, --rounds rounds interleaved: name -> [ids, totals, firsts, per-token gaps], and
    name -> the (read, triad) bandwidth measured just before it in each round."""
    runs = runners(m.backends, prompt, settings, args.vocab - 1)
    names = [*runs, *peers.batch1()]
    results = {name: [None, [], [], []] for name in names}
    ceiling = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names:  # the bandwidth just before each backend: a VM's varies by the minute
            ceiling[name].append(bandwidth(args.threads))
            if name == OPTIMUM:
                out = optimum_peer.run_optimum(peers.optimum, m.model_dir, prompt[0].tolist(), args.new_tokens,
                                               args.threads, args.repeats,
                                               m.backends["onnxruntime"].target.session_settings(),
                                               pad_token_id=args.vocab - 1)
                got = (torch.tensor([out["ids"]]), out["totals"], out["firsts"], out["per_token"])
            elif name in CT2:
                out = ct2_run(peers, m, name, prompt, args)
                got = (torch.tensor(out["ids"]), out["totals"], out["firsts"], out["per_token"])
            else:
                got = time_runs(runs[name], args.repeats, warm_up=round_ == 0)
            results[name][0] = got[0]
            for k in (1, 2, 3):
                results[name][k] += list(got[k])
    return results, ceiling


def batch1_rows(m: Measured, results: dict[str, list], ceiling: dict[str, list],
                args: argparse.Namespace) -> tuple[list[dict], bool]:
    """The batch-1 table's rows of model `m` (each printed as it is made), and whether every fp32 backend's tokens
    are transformers'."""
    ids_torch = results[TORCH][0]
    tps = {name: args.new_tokens / statistics.median(r[1]) for name, r in results.items()}
    rows, all_same = [], True
    for name, (ids, _, firsts, per_token) in results.items():
        assert ids.shape[1] == args.prompt_len + args.new_tokens, ids.shape
        same = bool(torch.equal(ids, ids_torch))
        share = float((ids[0, args.prompt_len:] == ids_torch[0, args.prompt_len:]).float().mean())
        same_text = "yes" if same else f"{share:.0%} of tokens"
        all_same &= same or name.endswith("int8")  # int8 changes the numbers: agreement is measured
        read_bw = statistics.median(c[0] for c in ceiling[name])
        triad_bw = statistics.median(c[1] for c in ceiling[name])
        vs_optimum = f"{tps[name] / tps[OPTIMUM]:.2f}x" if OPTIMUM in tps else "—"
        ct2_same = "ctranslate2 int8" if name.endswith("int8") else "ctranslate2"
        vs_ct2 = tps[name] / tps[ct2_same] if ct2_same in tps else None
        read = m.read[name]
        print(f"| {m.label} | {m.params / 1e6:.1f}M | {name} | {tps[name]:.1f} | "
              f"{statistics.median(firsts) * 1000:.1f} ms | {np.percentile(per_token, 50) * 1000:.2f} ms | "
              f"{np.percentile(per_token, 90) * 1000:.2f} ms | {tps[name] / tps[TORCH]:.2f}x | "
              f"{vs_optimum} | {f'{vs_ct2:.2f}x' if vs_ct2 else '—'} | {same_text} | "
              f"{read / 1e6:.1f} | {tps[name] * read / 1e9:.1f} | "
              f"{read_bw:.1f} / {triad_bw:.1f} | {read_bw * 1e9 / read:.0f} | "
              f"{tps[name] * read / 1e9 / read_bw:.0%} |", flush=True)
        rows.append({
            "table": "batch 1", "model": m.label, "params": m.params, "backend": name,
            "tokens_per_s": round(tps[name], 2),
            "time_to_first_token_ms": round(statistics.median(firsts) * 1000, 2),
            "per_token_p50_ms": round(float(np.percentile(per_token, 50)) * 1000, 3),
            "per_token_p90_ms": round(float(np.percentile(per_token, 90)) * 1000, 3),
            "vs_torch": round(tps[name] / tps[TORCH], 3),
            "vs_optimum": round(tps[name] / tps[OPTIMUM], 3) if OPTIMUM in tps else None,
            "vs_ctranslate2_same_precision": round(vs_ct2, 3) if vs_ct2 else None,
            "same_tokens": same_text, "mb_read_per_token": round(read / 1e6, 2),
            "gb_per_s": round(tps[name] * read / 1e9, 2), "read_bandwidth_gb_s": round(read_bw, 2),
            "triad_bandwidth_gb_s": round(triad_bw, 2),
            "memory_bus_ceiling_tokens_per_s": round(read_bw * 1e9 / read, 1),
            "share_of_read_ceiling": round(tps[name] * read / 1e9 / read_bw, 3),
            "onnx_export_s": round(m.export_s, 1)})
    return rows, all_same


@dataclass(frozen=True)
class BatchCell:
    """One model at one batch size: tokens/s per backend, whether every fp32 row is transformers', and each
    backend's share of tokens equal to transformers'."""

    label: str
    batch: int
    same: bool
    agree: dict[str, float]
    tokens_per_s: dict[str, float]


def time_batches(m: Measured, rng: np.random.Generator, settings: GenerateSettings, args: argparse.Namespace,
                 peers: Peers) -> list[BatchCell]:
    """Model `m` at each of --batches: random prompts decoded together, --rounds rounds interleaved."""
    cells = []
    for batch in [int(b) for b in args.batches.split(",") if b.strip()]:
        many = torch.tensor(rng.integers(0, args.vocab - 1, size=(batch, args.prompt_len)), dtype=torch.long)
        batch_runs = runners(m.backends, many, settings, args.vocab - 1)
        cell = {name: [None, []] for name in [*batch_runs, *peers.batches()]}
        for round_ in range(args.rounds):  # interleaved as the batch-1 table's
            for name in cell:
                if name in CT2:
                    out = ct2_run(peers, m, name, many, args)
                    ids, totals = torch.tensor(out["ids"]), out["totals"]
                else:
                    ids, totals, _, _ = time_runs(batch_runs[name], args.repeats, warm_up=round_ == 0)
                cell[name][0] = ids
                cell[name][1] += list(totals)
        ids_torch = cell[TORCH][0]
        agree = {name: float((ids[:, args.prompt_len:] == ids_torch[:, args.prompt_len:]).float().mean())
                 for name, (ids, _) in cell.items()}
        same = all(bool(torch.equal(cell[name][0], ids_torch)) for name in cell if not name.endswith("int8"))
        cells.append(BatchCell(m.label, batch, same, agree, {
            name: batch * args.new_tokens / statistics.median(totals) for name, (_, totals) in cell.items()}))
    return cells


def batch_rows(cells: list[BatchCell], args: argparse.Namespace, peers_on: bool) -> list[dict]:
    """The batch table, printed, and its rows."""
    print()
    print(f"# batches of prompts ({args.prompt_len} tokens each, {args.new_tokens} new tokens per row), "
          f"{args.rounds} rounds over the backends, each 1 warm-up + {args.repeats} timed runs per backend; "
          "tokens/s counts every row's tokens (median run); LTS vs CTranslate2 at the same precision")
    print()
    print("| model | batch | torch generate | onnxruntime (LTS) | onnxruntime int8 (LTS) "
          + ("| ctranslate2 | ctranslate2 int8 | LTS vs CTranslate2 fp32 | LTS vs CTranslate2 int8 " if peers_on
             else "")
          + "| fp32 rows same as torch | int8 tokens equal to torch's (LTS / CTranslate2) |")
    print("| --- | ---: | ---: | ---: | ---: | " + ("---: | ---: | ---: | ---: | " if peers_on else "")
          + "--- | --- |")
    rows = []
    for c in cells:
        tps = c.tokens_per_s
        ct2_cells = (f"{tps['ctranslate2']:.1f} | {tps['ctranslate2 int8']:.1f} | "
                     f"{tps['onnxruntime'] / tps['ctranslate2']:.2f}x | "
                     f"{tps['onnxruntime int8'] / tps['ctranslate2 int8']:.2f}x | ") if peers_on else ""
        int8_agree = f"{c.agree['onnxruntime int8']:.0%}" + (
            f" / {c.agree['ctranslate2 int8']:.0%}" if peers_on else "")
        print(f"| {c.label} | {c.batch} | {tps[TORCH]:.1f} | {tps['onnxruntime']:.1f} | "
              f"{tps['onnxruntime int8']:.1f} | {ct2_cells}{'yes' if c.same else 'NO'} | {int8_agree} |")
        rows.append({
            "table": "batches", "model": c.label, "batch": c.batch,
            **{f"{name} tokens_per_s": round(v, 2) for name, v in tps.items()},
            **({"lts_vs_ctranslate2_fp32": round(tps["onnxruntime"] / tps["ctranslate2"], 3),
                "lts_vs_ctranslate2_int8": round(tps["onnxruntime int8"] / tps["ctranslate2 int8"], 3)}
               if peers_on else {}),
            "fp32_rows_same_as_torch": c.same,
            **{f"{name} tokens_equal_to_torch": round(a, 4) for name, a in c.agree.items()}})
    return rows


def print_header(args: argparse.Namespace, peers: Peers) -> None:
    """The conditions, the peers' versions and the batch-1 table's heading."""
    print(f"# greedy decode, batch 1: prompt {args.prompt_len} tokens, {args.new_tokens} new tokens; {args.rounds} "
          f"rounds over the backends, each 1 warm-up + {args.repeats} timed runs per backend; {args.threads} threads "
          f"for every backend")
    print(f"# {cpu_model()}, {os.cpu_count()} cores visible, load average at start "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; python {platform.python_version()}, "
          f"torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}")
    if peers.optimum is not None:
        v = optimum_peer.venv_versions(peers.optimum)
        print(f"# Optimum in its own venv: optimum-onnx {v['optimum-onnx']}, optimum {v['optimum']}, transformers "
              f"{v['transformers']}, onnxruntime {v['onnxruntime']}, torch {v['torch']} (same session options)")
    if peers.ctranslate2 is not None:
        v = ctranslate2_peer.venv_versions(peers.ctranslate2)
        print(f"# CTranslate2 in its own venv: ctranslate2 {v['ctranslate2']}, transformers {v['transformers']} "
              f"(its converter), torch {v['torch']}; intra_threads {args.threads}, inter_threads 1")
    print(f"# vocab {args.vocab}; memory bandwidth with {args.threads} threads measured just before each backend in "
          "each round (512 MiB float32, median of 7; read = the ceiling for weights, triad for reference)")
    print()
    print("| model | params | backend | tokens/s | time to first token | per-token p50 | per-token p90 "
          "| vs torch | vs Optimum | vs CTranslate2 (same precision) | same tokens | MB read / token | GB/s "
          "| read / triad bandwidth (GB/s) | memory-bus ceiling (tokens/s) "
          "| of the read ceiling |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: "
          "| ---: |")


Plan = list[tuple[int, Callable[[], tuple[Any, int, str]]]]  # (its KV cache's floats per token, make the model)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Plan]:
    """The flags, and the models to measure: --models' folders (their vocabulary becomes --vocab) or --sizes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="2x256,4x384,6x512", help="comma-separated LAYERSxN_EMBD (default %(default)s)")
    p.add_argument("--models", default=None, help="comma-separated model folders (a search's models/<archid>/: "
                   "their config.json, weights drawn here) instead of --sizes; --vocab is theirs")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per backend and round (default %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="rounds over the backends, interleaved: each round "
                   "measures the bandwidth and times every backend once more (default %(default)s)")
    p.add_argument("--vocab", type=int, default=50257, help="vocabulary of the random models (default %(default)s)")
    add_threads_flag(p, "torch threads and ONNX Runtime intra-op threads")
    p.add_argument("--batches", default="1,4,16", help="batch sizes of the batch table (default %(default)s; "
                   "'' skips it)")
    p.add_argument("--no-optimum", action="store_true", help="leave Hugging Face Optimum out")
    p.add_argument("--optimum-venv", type=Path, default=None,
                   help="Optimum's own venv, made on first use (default optimum-venv in the LTS cache root)")
    p.add_argument("--no-ctranslate2", action="store_true", help="leave CTranslate2 out")
    p.add_argument("--ctranslate2-venv", type=Path, default=None,
                   help="CTranslate2's own venv, made on first use (default ctranslate2-venv in the LTS cache root)")
    add_json_flag(p, "generation")
    args = p.parse_args(argv)
    if not args.models:
        return args, [(n_layer * n_embd, lambda n_layer=n_layer, n_embd=n_embd: (
            *build_model(n_layer, n_embd, args.vocab), f"{n_layer}x{n_embd}")) for n_layer, n_embd in
            parse_sizes(args.sizes)]
    folders = [Path(f) for f in args.models.split(",") if f.strip()]
    missing = [str(f) for f in folders if not (f / "config.json").is_file()]
    if missing:
        p.error(f"no config.json in {', '.join(missing)}")
    try:
        archs = [load_arch(f) for f in folders]  # GPT-2, Llama: any family LTS knows
    except LTSError as exc:
        p.error(str(exc))
    if len({a.vocab_size for a in archs}) != 1:
        p.error("--models: the models must share one vocabulary size")
    args.vocab = archs[0].vocab_size
    return args, [(sum(h * d for h, d in a.kv_layout()), lambda f=f: model_from_folder(f))
                  for f, a in zip(folders, archs)]


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    peers = start_peers(args)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    settings = GenerateSettings(model="-", tokenizer="-", prompt="-", max_new_tokens=args.new_tokens, greedy=True)
    rng = np.random.default_rng(0)
    prompt = torch.tensor(rng.integers(0, args.vocab - 1, size=(1, args.prompt_len)), dtype=torch.long)
    print_header(args, peers)
    rows, cells, all_same = [], [], True  # rows: the same figures as the tables, for the JSON result
    with tempfile.TemporaryDirectory(prefix="lts-bench-onnx-") as cache:
        for kv_width, make in plan:
            m = prepare(make, kv_width, cache, args, peers)
            model_rows, same = batch1_rows(m, *time_batch1(m, prompt, settings, args, peers), args)
            rows += model_rows
            all_same &= same
            print(f"<!-- {m.label}: ONNX export {m.export_s:.1f} s (once per model, cached by content hash) -->",
                  flush=True)
            cells += time_batches(m, rng, settings, args, peers)
    all_same &= all(c.same for c in cells)
    if cells:
        rows += batch_rows(cells, args, peers.ctranslate2 is not None)
    print()
    print(f"# load average at end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    write_result("generation", conditions={
        "sizes": None if args.models else args.sizes, "models": args.models, "vocab": args.vocab,
        "prompt_tokens": args.prompt_len, "new_tokens": args.new_tokens,
        "rounds": args.rounds, "timed_runs_per_round": args.repeats, "batches": args.batches,
        "optimum_venv": optimum_peer.venv_versions(peers.optimum) if peers.optimum is not None else None,
        "ctranslate2_venv": (ctranslate2_peer.venv_versions(peers.ctranslate2) if peers.ctranslate2 is not None
                             else None),
        "greedy": True, "all_fp32_tokens_same": all_same,
    }, rows=rows, threads=args.threads, path=args.json)
    if not all_same:
        print("ERROR: the backends' greedy tokens differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
