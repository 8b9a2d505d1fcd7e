#!/usr/bin/env python
"""Hugging Face Optimum's ``ORTModelForCausalLM`` as a peer in the greedy-decode benchmark, run in its own venv.

    python benchmarks/optimum_peer.py --model DIR --new-tokens 128 --repeats 3 --threads 2
    python benchmarks/optimum_peer.py --size 2x64 --vocab 512 --new-tokens 16 --repeats 1   # a random GPT-2

optimum-onnx pins transformers < 5 and this project uses transformers 5, so Optimum lives in a
virtual environment of its own (``--venv``; default ``$LTS_CACHE_DIR/optimum-venv``, else
``$XDG_CACHE_HOME/lts/optimum-venv``, i.e. ``~/.cache/lts/optimum-venv``), made on first use:
the calling interpreter's torch version (without its ``+cpu``-style local label) and
onnxruntime version, then optimum-onnx with whatever transformers 4.x it asks for. That takes
minutes and about 1 GB; a marker file written last (``.lts-ready``, holding the pins) marks it
complete, so an interrupted install is redone, and a change of the pins reinstalls.

This file is then run under that venv's python in worker mode (``--worker``, used by
:func:`run_optimum`): it exports the saved model folder with Optimum
(``ORTModelForCausalLM.from_pretrained(export=True, use_cache=True)``, CPU execution provider,
session options as ``lts.cost.target.CPUTarget``'s: `threads` intra-op threads, one inter-op
thread, sequential execution, all graph optimisations), timed apart as ``export_s``, and decodes
greedily with ``generate`` like benchmarks/generation.py times its own backends: batch 1, eos
disabled so every run makes exactly `new_tokens` tokens, one warm-up, then `repeats` timed runs,
a streamer stamping each token (the prompt's ``put`` first, as ``lts.generate.TimingStreamer``).
It prints one JSON line on stdout (warnings and logs go to stderr).

The model folder is a plain ``model.save_pretrained(dir)`` from the caller's transformers 5: the
transformers 4.57 that optimum-onnx 0.1 gets reads it as it is (checked: 5 writes the weights'
dtype as ``dtype``, which 4.56+ reads, warning about ``torch_dtype`` instead; the tied LM head
stays tied; keys 4.x does not know become plain attributes). An older 4.x would want
``torch_dtype`` in config.json as well.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))  # _peer_venv, also for the worker (run as a script under the Optimum venv)

import _peer_venv as peer  # noqa: E402

PACKAGES = ("optimum-onnx", "optimum", "transformers", "onnxruntime", "torch")


def default_venv_dir() -> Path:
    """``$LTS_CACHE_DIR/optimum-venv``, else ``$XDG_CACHE_HOME/lts/optimum-venv`` (``~/.cache/lts/optimum-venv``).
    Called in the project's environment only (never by the worker, which cannot import lts)."""
    return peer.cache_dir("optimum-venv")


def ensure_venv(path: Path | None = None, log=print) -> Path:
    """The python of an Optimum venv at `path` (default :func:`default_venv_dir`), made or completed if needed.

    Steps, each logged in one line (:func:`_peer_venv.ensure_venv`): ``python -m venv``; ``pip install
    torch==<ours>`` (plain ``torch`` if that version is not installable there); ``pip install optimum-onnx
    onnxruntime==<ours>`` (torch pinned again so pip keeps it; transformers is what optimum-onnx asks for,
    < 5). The marker file, holding the caller's torch and onnxruntime versions, goes last. Refuses a
    non-empty folder that is not a venv rather than clearing it.
    """
    pins = peer.caller_pins(("torch", "onnxruntime"))
    ort_spec = peer.spec("onnxruntime", pins["onnxruntime"])
    return peer.ensure_venv(
        Path(path) if path else default_venv_dir(), label="optimum", pins=pins, packages=PACKAGES, log=log,
        installs=[(f"installing optimum-onnx and {ort_spec} (transformers < 5 as optimum-onnx requires)",
                   ["optimum-onnx", ort_spec])])


def venv_versions(python: Path) -> dict[str, str | None]:
    """The installed versions of optimum-onnx, optimum, transformers, onnxruntime and torch under `python`."""
    return peer.venv_versions(python, PACKAGES)


def run_optimum(python: Path, model_dir: Path, prompt_ids: list[int], new_tokens: int, threads: int, repeats: int,
                session_settings: dict, timeout_s: float = 1800, *, pad_token_id: int | None = None) -> dict:
    """Export and time `model_dir` with Optimum in worker mode under the venv's `python`; the worker's JSON.

    ``{"ids": prompt + new ids, "totals": [s per timed run], "firsts": [time to first token s per run],
    "per_token": [every gap between tokens s], "export_s": s, "versions": {...}, "options": {...}}``;
    ``options`` says how Optimum set itself up (IO binding, KV cache, ONNX files, session settings).
    `session_settings`: ``CPUTarget.session_settings()``, applied to Optimum's session as to ours.
    Raises RuntimeError with the tail of the worker's stderr if it fails or prints no result.
    """
    argv = ["--model", str(model_dir), "--prompt", ",".join(str(int(i)) for i in prompt_ids),
            "--new-tokens", str(new_tokens), "--threads", str(threads), "--repeats", str(repeats),
            "--session-options", json.dumps(session_settings)]
    if pad_token_id is not None:
        argv += ["--pad", str(pad_token_id)]
    return peer.run_worker(python, HERE, argv, timeout_s, "Optimum")


class _Stamps:
    """A generate streamer like lts.generate.TimingStreamer: the first ``put`` is the prompt, then one per token."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value) -> None:
        if self._prompt_seen:
            self.times.append(time.perf_counter() - self.start)
        self._prompt_seen = True

    def end(self) -> None:
        pass


def _measure(args: argparse.Namespace) -> dict:
    """The worker's work, under the Optimum venv: export, warm-up, timed runs."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    import onnxruntime as ort
    import torch
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from optimum.onnxruntime import ORTModelForCausalLM

    torch.set_num_threads(args.threads)
    so = ort.SessionOptions()  # lts.cost.target.CPUTarget.session_settings(), passed in as JSON
    for name, value in json.loads(args.session_options).items():
        if name == "execution_mode":
            value = getattr(ort.ExecutionMode, value)
        elif name == "graph_optimization_level":
            value = getattr(ort.GraphOptimizationLevel, value)
        setattr(so, name, value)

    t0 = time.perf_counter()
    model = ORTModelForCausalLM.from_pretrained(args.model, export=True, use_cache=True,
                                                provider="CPUExecutionProvider", session_options=so)
    export_s = time.perf_counter() - t0

    prompt = [int(x) for x in args.prompt.split(",")]
    input_ids = torch.tensor([prompt], dtype=torch.long)
    config = model.config
    pad = args.pad if args.pad is not None else next(
        (v for v in (config.pad_token_id, config.eos_token_id) if isinstance(v, int)), 0)
    # eos disabled (as benchmarks/generation.py's own backends): exactly new_tokens tokens, eos a token like any.
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=None,
                                               pad_token_id=pad)
    gen = GenerationConfig(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                           num_beams=1, use_cache=True, eos_token_id=None, pad_token_id=pad)

    def run(streamer: _Stamps) -> list[int]:
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=gen,
                                 streamer=streamer)
        return [int(x) for x in out[0]]

    run(_Stamps())  # warm-up
    totals, firsts, per_token, ids = [], [], [], []
    for _ in range(args.repeats):
        stamps = _Stamps()
        ids = run(stamps)
        totals.append(time.perf_counter() - stamps.start)
        firsts.append(stamps.times[0])
        per_token += [b - a for a, b in zip(stamps.times, stamps.times[1:])]
    if len(ids) != len(prompt) + args.new_tokens:
        raise RuntimeError(f"Optimum made {len(ids) - len(prompt)} tokens, not {args.new_tokens}")

    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    sessions = [s for s in (getattr(model, "session", None), getattr(model, "model", None))
                if hasattr(s, "get_session_options")]
    so_used = sessions[0].get_session_options() if sessions else so
    options = {
        "use_io_binding": getattr(model, "use_io_binding", None),
        "can_use_cache": getattr(model, "can_use_cache", None),
        "is_merged": getattr(model, "is_merged", None),
        "onnx_inputs": [i.name for i in sessions[0].get_inputs()] if sessions else None,
        "providers": sessions[0].get_providers() if sessions else None,
        "model_path": str(getattr(model, "path", "")) or None,
        "intra_op_num_threads": so_used.intra_op_num_threads,
        "inter_op_num_threads": so_used.inter_op_num_threads,
        "execution_mode": str(so_used.execution_mode),
        "graph_optimization_level": str(so_used.graph_optimization_level),
        "torch_threads": torch.get_num_threads(),
    }
    return {"ids": ids, "totals": totals, "firsts": firsts, "per_token": per_token, "export_s": export_s,
            "versions": {name: version(name) for name in PACKAGES}, "options": options}


def _worker(args: argparse.Namespace) -> int:
    """Run _measure with fd 1 pointed at stderr (nothing, not even C++ code, can print on stdout), then the JSON."""
    return peer.worker_main(lambda: _measure(args))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Makes the Optimum venv on first use (minutes, ~1 GB), exports the model with Optimum, decodes "
               "greedily (batch 1, eos disabled, 1 warm-up + --repeats timed runs) and prints tokens/s, time to "
               "first token and per-token latency. Without --model, a random GPT-2 of --size is built here "
               "(this needs the project's own venv, transformers 5).")
    peer.add_model_args(p, "Optimum", default_venv_dir())
    p.add_argument("--prompt", help="comma-separated prompt token ids (default: --prompt-len random ids)")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="ONNX Runtime intra-op threads and torch threads (default min(2, cores))")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pad", type=int, default=None, help="pad token id (default the model's pad, else eos, else 0)")
    p.add_argument("--graph-optimization", choices=("disable", "basic", "extended", "all"), default="all",
                   help="ONNX Runtime graph optimisation level, as CPUTarget's (default %(default)s)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds the worker may run (default %(default)s)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--session-options", default="{}", help=argparse.SUPPRESS)  # worker: the SessionOptions as JSON
    args = p.parse_args(argv)

    if args.worker:
        if args.model is None or args.prompt is None:
            p.error("--worker needs --model and --prompt")
        return _worker(args)

    import numpy as np

    python = ensure_venv(args.venv)
    with tempfile.TemporaryDirectory(prefix="lts-optimum-model-") as tmp:
        model_dir = args.model or peer.random_model(args.size, args.vocab, Path(tmp) / "model")
        if args.prompt:
            prompt = [int(x) for x in args.prompt.split(",")]
        else:
            vocab = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))["vocab_size"]
            prompt = [int(x) for x in np.random.default_rng(0).integers(0, vocab - 1, size=args.prompt_len)]
        sys.path.insert(0, str(HERE.parent.parent))
        from lts.cost.target import CPUTarget

        settings = CPUTarget(threads=args.threads, graph_optimization=args.graph_optimization).session_settings()
        result = run_optimum(python, model_dir, prompt, args.new_tokens, args.threads, args.repeats, settings,
                             args.timeout, pad_token_id=args.pad)
    gaps = result["per_token"] or [float("nan")]
    p50, p90 = (float(np.percentile(gaps, q)) * 1000 for q in (50, 90))
    print("# Optimum ORTModelForCausalLM: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print(f"# options: {json.dumps(result['options'])}")
    print(f"export {result['export_s']:.1f} s; prompt {len(prompt)} tokens, {args.new_tokens} new, "
          f"{args.threads} threads, {args.repeats} timed runs after 1 warm-up")
    print(f"tokens/s {args.new_tokens / statistics.median(result['totals']):.1f}; time to first token "
          f"{statistics.median(result['firsts']) * 1000:.1f} ms; per-token p50 {p50:.2f} ms, p90 {p90:.2f} ms")
    print("ids: " + ",".join(map(str, result["ids"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
