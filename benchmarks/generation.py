#!/usr/bin/env python
"""Greedy decoding speed: transformers' ``generate``, LTS's ONNX Runtime KV-cache loop (fp32, int8) and Optimum.

    python benchmarks/generation.py                      # 2x256, 4x384, 6x512; 128 new tokens
    python benchmarks/generation.py --sizes 6x512 --vocab 4096 --rounds 3 --threads 2
    python benchmarks/generation.py --sizes 6x512 --no-optimum --batches ''

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
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from _results import add_json_flag, cpu_model, write_result  # noqa: E402


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        layers, embd = part.lower().split("x")
        sizes.append((int(layers), int(embd)))
    return sizes


def build_model(n_layer: int, n_embd: int, vocab: int = 50257):
    import torch
    from transformers import GPT2LMHeadModel

    from lts.families.gpt2 import ArchConfig

    n_head = 8 if n_embd % 8 == 0 else 4
    cfg = ArchConfig(n_layer, n_embd, 4 * n_embd, n_head, vocab_size=vocab, n_positions=1024)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg.to_hf_config(bos_token_id=vocab - 1, eos_token_id=vocab - 1)).eval()
    return model, sum(p.numel() for p in model.parameters())


def model_from_folder(folder: Path):
    """A GPT-2 of the architecture in `folder`'s config.json (a search's models/<archid>/), weights drawn here (seed 0),
    eos = pad = the last id; (model, params, label)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config.from_pretrained(folder)
    config.bos_token_id = config.eos_token_id = config.vocab_size - 1
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    inner = config.n_inner or 4 * config.n_embd
    label = f"{Path(folder).name} {config.n_layer}x{config.n_embd}/{inner}/{config.n_head}"
    return model, sum(p.numel() for p in model.parameters()), label


def bandwidth(threads: int, mib: int = 512, repeats: int = 7) -> tuple[float, float]:
    """(read GB/s, triad GB/s), medians of `repeats`, with `threads` torch threads; 1 GB = 1e9 bytes."""
    import torch

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


def graph_bytes_per_token(folder: Path, n_layer: int, n_embd: int, prompt: int, new: int) -> float:
    """Bytes a decode step of the ONNX graph in `folder` reads: every initializer in full, except those only
    looked up by Gather (embeddings: one row per token), + the mean KV cache over the run (float32)."""
    import onnx
    from onnx import numpy_helper

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
    return total + 2 * n_layer * (prompt + (new - 1) / 2) * n_embd * 4


def time_runs(fn, repeats: int, warm_up: bool = True):
    """(One warm-up, then) `repeats` timed runs of fn(streamer) -> ids; (ids, [total s], [ttft s], [per-token s])."""
    from lts.generate import TimingStreamer

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


OPTIMUM = "optimum ORTModelForCausalLM"
CT2 = {"ctranslate2": "float32", "ctranslate2 int8": "int8"}  # backend name -> CTranslate2 compute_type


def runners(backends: dict, ids, settings, pad: int) -> dict:
    """name -> fn(streamer) decoding `ids` greedily on that backend (torch model or OnnxKVModel)."""
    from transformers import LogitsProcessorList

    from lts.generate import generate_onnx, generate_torch

    def one(name: str, model):
        decode = generate_torch if name == "torch generate" else generate_onnx
        return lambda streamer: decode(model, ids, settings, LogitsProcessorList(), None, pad, streamer)

    return {name: one(name, model) for name, model in backends.items()}


def main(argv: list[str] | None = None) -> int:
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
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="torch threads and ONNX Runtime intra-op threads (default min(2, cores))")
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
    if args.models:
        folders = [Path(f) for f in args.models.split(",") if f.strip()]
        missing = [str(f) for f in folders if not (f / "config.json").is_file()]
        if missing:
            p.error(f"no config.json in {', '.join(missing)}")
        configs = [json.loads((f / "config.json").read_text(encoding="utf-8")) for f in folders]
        if len({c["vocab_size"] for c in configs}) != 1:
            p.error("--models: the models must share one vocabulary size")
        args.vocab = configs[0]["vocab_size"]
        plan = [(c["n_layer"], c["n_embd"], lambda f=f: model_from_folder(f)) for f, c in zip(folders, configs)]
    else:
        plan = [(n_layer, n_embd, lambda n_layer=n_layer, n_embd=n_embd: (
            *build_model(n_layer, n_embd, args.vocab), f"{n_layer}x{n_embd}")) for n_layer, n_embd in
            parse_sizes(args.sizes)]

    import onnxruntime
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    from lts.cost.target import CPUTarget
    from lts.generate import GenerateSettings
    from lts.generate.onnx_kv import OnnxKVModel, cached_kv_onnx

    optimum_python = None
    if not args.no_optimum:
        from optimum_peer import ensure_venv, run_optimum, venv_versions

        optimum_python = ensure_venv(args.optimum_venv, log=lambda line: print(line, file=sys.stderr))
    ct2_python = None
    if not args.no_ctranslate2:
        import ctranslate2_peer

        ct2_python = ctranslate2_peer.ensure_venv(args.ctranslate2_venv, log=lambda line: print(line, file=sys.stderr))
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    settings = GenerateSettings(model="-", tokenizer="-", prompt="-", max_new_tokens=args.new_tokens, greedy=True)
    rng = np.random.default_rng(0)
    prompt = torch.tensor(rng.integers(0, args.vocab - 1, size=(1, args.prompt_len)), dtype=torch.long)

    print(f"# greedy decode, batch 1: prompt {args.prompt_len} tokens, {args.new_tokens} new tokens; {args.rounds} "
          f"rounds over the backends, each 1 warm-up + {args.repeats} timed runs per backend; {args.threads} threads "
          f"for every backend")
    print(f"# {cpu_model()}, {os.cpu_count()} cores visible, load average at start "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; python {platform.python_version()}, "
          f"torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}")
    if optimum_python is not None:
        v = venv_versions(optimum_python)
        print(f"# Optimum in its own venv: optimum-onnx {v['optimum-onnx']}, optimum {v['optimum']}, transformers "
              f"{v['transformers']}, onnxruntime {v['onnxruntime']}, torch {v['torch']} (same session options)")
    if ct2_python is not None:
        v = ctranslate2_peer.venv_versions(ct2_python)
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
    all_same = True
    batch_rows = []
    json_rows = []  # the same figures as the tables, for benchmarks/results/generation.json
    with tempfile.TemporaryDirectory(prefix="lts-bench-onnx-") as cache:
        for n_layer, n_embd, make in plan:
            model, params, label = make()
            t0 = time.perf_counter()
            folder, _ = cached_kv_onnx(model, cache)
            export_s = time.perf_counter() - t0
            onnx_model = OnnxKVModel(folder, CPUTarget(threads=args.threads))
            int8_folder, _ = cached_kv_onnx(model, cache, precision="int8")
            int8_model = OnnxKVModel(int8_folder, CPUTarget(threads=args.threads))
            fp32_bytes = graph_bytes_per_token(folder, n_layer, n_embd, args.prompt_len, args.new_tokens)
            int8_bytes = graph_bytes_per_token(int8_folder, n_layer, n_embd, args.prompt_len, args.new_tokens)
            # torch, Optimum and CTranslate2 float32 read the same fp32 weights as the fp32 graph; CTranslate2
            # int8 about the int8 graph's (int8 matrices, the embeddings' rows looked up)
            read = {"torch generate": fp32_bytes, "onnxruntime": fp32_bytes, "onnxruntime int8": int8_bytes,
                    OPTIMUM: fp32_bytes, "ctranslate2": fp32_bytes, "ctranslate2 int8": int8_bytes}

            backends = {"torch generate": model, "onnxruntime": onnx_model, "onnxruntime int8": int8_model}
            runs = runners(backends, prompt, settings, args.vocab - 1)
            model_dir = Path(cache) / f"hf-{label.split()[0]}"
            if optimum_python is not None or ct2_python is not None:
                model.save_pretrained(model_dir)
            peers = [*([OPTIMUM] if optimum_python is not None else []), *(CT2 if ct2_python is not None else [])]

            def ct2_run(name: str, prompts, model_dir: Path = model_dir) -> dict:
                """CTranslate2 at backend `name`'s compute type on `prompts` (B, S): its worker's JSON."""
                return ctranslate2_peer.run_ctranslate2(ct2_python, model_dir, prompts.tolist(), args.new_tokens,
                                                        args.threads, args.repeats, CT2[name],
                                                        eos_token_id=args.vocab - 1)
            names = [*runs, *peers]
            results = {name: [None, [], [], []] for name in names}
            ceiling = {name: [] for name in names}
            for round_ in range(args.rounds):
                for name in names:  # the bandwidth just before each backend: a VM's varies by the minute
                    ceiling[name].append(bandwidth(args.threads))
                    if name == OPTIMUM:
                        out = run_optimum(optimum_python, model_dir, prompt[0].tolist(), args.new_tokens,
                                          args.threads, args.repeats, onnx_model.target.session_settings(),
                                          pad_token_id=args.vocab - 1)
                        got = (torch.tensor([out["ids"]]), out["totals"], out["firsts"], out["per_token"])
                    elif name in CT2:
                        out = ct2_run(name, prompt)
                        got = (torch.tensor(out["ids"]), out["totals"], out["firsts"], out["per_token"])
                    else:
                        got = time_runs(runs[name], args.repeats, warm_up=round_ == 0)
                    results[name][0] = got[0]
                    for k in (1, 2, 3):
                        results[name][k] += list(got[k])
            ids_torch = results["torch generate"][0]
            tps = {name: args.new_tokens / statistics.median(r[1]) for name, r in results.items()}
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
                print(f"| {label} | {params / 1e6:.1f}M | {name} | {tps[name]:.1f} | "
                      f"{statistics.median(firsts) * 1000:.1f} ms | {np.percentile(per_token, 50) * 1000:.2f} ms | "
                      f"{np.percentile(per_token, 90) * 1000:.2f} ms | {tps[name] / tps['torch generate']:.2f}x | "
                      f"{vs_optimum} | {f'{vs_ct2:.2f}x' if vs_ct2 else '—'} | {same_text} | "
                      f"{read[name] / 1e6:.1f} | {tps[name] * read[name] / 1e9:.1f} | "
                      f"{read_bw:.1f} / {triad_bw:.1f} | {read_bw * 1e9 / read[name]:.0f} | "
                      f"{tps[name] * read[name] / 1e9 / read_bw:.0%} |", flush=True)
                json_rows.append({
                    "table": "batch 1", "model": label, "params": params, "backend": name,
                    "tokens_per_s": round(tps[name], 2),
                    "time_to_first_token_ms": round(statistics.median(firsts) * 1000, 2),
                    "per_token_p50_ms": round(float(np.percentile(per_token, 50)) * 1000, 3),
                    "per_token_p90_ms": round(float(np.percentile(per_token, 90)) * 1000, 3),
                    "vs_torch": round(tps[name] / tps["torch generate"], 3),
                    "vs_optimum": round(tps[name] / tps[OPTIMUM], 3) if OPTIMUM in tps else None,
                    "vs_ctranslate2_same_precision": round(vs_ct2, 3) if vs_ct2 else None,
                    "same_tokens": same_text, "mb_read_per_token": round(read[name] / 1e6, 2),
                    "gb_per_s": round(tps[name] * read[name] / 1e9, 2), "read_bandwidth_gb_s": round(read_bw, 2),
                    "triad_bandwidth_gb_s": round(triad_bw, 2),
                    "memory_bus_ceiling_tokens_per_s": round(read_bw * 1e9 / read[name], 1),
                    "share_of_read_ceiling": round(tps[name] * read[name] / 1e9 / read_bw, 3),
                    "onnx_export_s": round(export_s, 1)})
            print(f"<!-- {label}: ONNX export {export_s:.1f} s (once per model, cached by content hash) -->",
                  flush=True)
            for batch in [int(b) for b in args.batches.split(",") if b.strip()]:
                many = torch.tensor(rng.integers(0, args.vocab - 1, size=(batch, args.prompt_len)), dtype=torch.long)
                batch_runs = runners(backends, many, settings, args.vocab - 1)
                cell = {name: [None, []] for name in [*batch_runs, *(CT2 if ct2_python is not None else [])]}
                for round_ in range(args.rounds):  # interleaved as the batch-1 table's
                    for name in cell:
                        if name in CT2:
                            out = ct2_run(name, many)
                            ids, totals = torch.tensor(out["ids"]), out["totals"]
                        else:
                            ids, totals, _, _ = time_runs(batch_runs[name], args.repeats, warm_up=round_ == 0)
                        cell[name][0] = ids
                        cell[name][1] += list(totals)
                ids_torch = cell["torch generate"][0]
                agree = {name: float((ids[:, args.prompt_len:] == ids_torch[:, args.prompt_len:]).float().mean())
                         for name, (ids, _) in cell.items()}
                fp32_same = [name for name in cell if not name.endswith("int8")]
                same = all(bool(torch.equal(cell[name][0], ids_torch)) for name in fp32_same)
                all_same &= same
                batch_rows.append((label, batch, same, agree, {
                    name: batch * args.new_tokens / statistics.median(totals) for name, (_, totals) in cell.items()}))
    if batch_rows:
        print()
        print(f"# batches of prompts ({args.prompt_len} tokens each, {args.new_tokens} new tokens per row), "
              f"{args.rounds} rounds over the backends, each 1 warm-up + {args.repeats} timed runs per backend; "
              "tokens/s counts every row's tokens (median run); LTS vs CTranslate2 at the same precision")
        print()
        peers_on = ct2_python is not None
        print("| model | batch | torch generate | onnxruntime (LTS) | onnxruntime int8 (LTS) "
              + ("| ctranslate2 | ctranslate2 int8 | LTS vs CTranslate2 fp32 | LTS vs CTranslate2 int8 " if peers_on
                 else "")
              + "| fp32 rows same as torch | int8 tokens equal to torch's (LTS / CTranslate2) |")
        print("| --- | ---: | ---: | ---: | ---: | " + ("---: | ---: | ---: | ---: | " if peers_on else "")
              + "--- | --- |")
        for label, batch, same, agree, tps_b in batch_rows:
            ct2_cells = (f"{tps_b['ctranslate2']:.1f} | {tps_b['ctranslate2 int8']:.1f} | "
                         f"{tps_b['onnxruntime'] / tps_b['ctranslate2']:.2f}x | "
                         f"{tps_b['onnxruntime int8'] / tps_b['ctranslate2 int8']:.2f}x | ") if peers_on else ""
            int8_agree = f"{agree['onnxruntime int8']:.0%}" + (
                f" / {agree['ctranslate2 int8']:.0%}" if peers_on else "")
            print(f"| {label} | {batch} | {tps_b['torch generate']:.1f} | {tps_b['onnxruntime']:.1f} | "
                  f"{tps_b['onnxruntime int8']:.1f} | {ct2_cells}{'yes' if same else 'NO'} | {int8_agree} |")
            json_rows.append({
                "table": "batches", "model": label, "batch": batch,
                **{f"{name} tokens_per_s": round(v, 2) for name, v in tps_b.items()},
                **({"lts_vs_ctranslate2_fp32": round(tps_b["onnxruntime"] / tps_b["ctranslate2"], 3),
                    "lts_vs_ctranslate2_int8": round(tps_b["onnxruntime int8"] / tps_b["ctranslate2 int8"], 3)}
                   if peers_on else {}),
                "fp32_rows_same_as_torch": same,
                **{f"{name} tokens_equal_to_torch": round(a, 4) for name, a in agree.items()}})
    print()
    print(f"# load average at end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    write_result("generation", conditions={
        "sizes": None if args.models else args.sizes, "models": args.models, "vocab": args.vocab,
        "prompt_tokens": args.prompt_len, "new_tokens": args.new_tokens,
        "rounds": args.rounds, "timed_runs_per_round": args.repeats, "batches": args.batches,
        "optimum_venv": venv_versions(optimum_python) if optimum_python is not None else None,
        "ctranslate2_venv": ctranslate2_peer.venv_versions(ct2_python) if ct2_python is not None else None,
        "greedy": True, "all_fp32_tokens_same": all_same,
    }, rows=json_rows, threads=args.threads, path=args.json)
    if not all_same:
        print("ERROR: the backends' greedy tokens differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
