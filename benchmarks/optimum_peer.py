#!/usr/bin/env python
"""Hugging Face Optimum's ``ORTModelForCausalLM`` as a peer in the greedy-decode benchmark, run in its own venv.

    python -m benchmarks.optimum_peer --model DIR --new-tokens 128 --repeats 3 --threads 2
    python -m benchmarks.optimum_peer --size 2x64 --vocab 512 --new-tokens 16 --repeats 1   # a random GPT-2

optimum-onnx pins transformers < 5 and this project uses transformers 5, so Optimum lives in a
virtual environment of its own (``--venv``; default ``$LTS_CACHE_DIR/optimum-venv``, else
``$XDG_CACHE_HOME/lts/optimum-venv``, i.e. ``~/.cache/lts/optimum-venv``), made on first use:
the calling interpreter's torch version (without its ``+cpu``-style local label) and
onnxruntime version, then optimum-onnx with whatever transformers 4.x it asks for. That takes
minutes and about 1 GB; a marker file written last (``.lts-ready``, holding the pins) marks it
complete, so an interrupted install is redone, and a change of the pins reinstalls.

Its worker, ``benchmarks/_optimum_worker.py``, is then run under that venv's python (``python -m
benchmarks._optimum_worker``, by :func:`run_optimum`): it exports the saved model folder with Optimum
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
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import benchmarks._peer_venv as peer
from benchmarks._cli import add_threads_flag
from benchmarks._optimum_worker import PACKAGES
from lts.cost.target import CPUTarget

WORKER = "benchmarks._optimum_worker"


def default_venv_dir() -> Path:
    """``$LTS_CACHE_DIR/optimum-venv``, else ``$XDG_CACHE_HOME/lts/optimum-venv`` (``~/.cache/lts/optimum-venv``)."""
    return peer.cache_dir("optimum-venv")


def ensure_venv(path: Path | None = None, log: Callable[[str], object] = print) -> Path:
    """The python of an Optimum venv at `path` (default :func:`default_venv_dir`), made or completed if needed.

    Steps, each logged in one line (:func:`benchmarks._peer_venv.ensure_venv`): ``python -m venv``; ``pip install
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
    """Export and time `model_dir` with Optimum in its worker under the venv's `python`; the worker's JSON.

    ``{"ids": prompt + new ids, "totals": [s per timed run], "firsts": [time to first token s per run],
    "per_token": [every gap between tokens s], "export_s": s, "versions": {...}, "options": {...}}``;
    ``options`` says how Optimum set itself up (IO binding, KV cache, ONNX files, session settings).
    `session_settings`: ``CPUTarget.session_settings()``, applied to Optimum's session as to ours.
    Raises RuntimeError with the tail of the worker's stderr if it fails or prints no result.
    """
    argv = ["--model", str(Path(model_dir).resolve()), "--prompt", ",".join(str(int(i)) for i in prompt_ids),
            "--new-tokens", str(new_tokens), "--threads", str(threads), "--repeats", str(repeats),
            "--session-options", json.dumps(session_settings)]
    if pad_token_id is not None:
        argv += ["--pad", str(pad_token_id)]
    return peer.run_worker(python, WORKER, argv, timeout_s, "Optimum")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Makes the Optimum venv on first use (minutes, ~1 GB), exports the model with Optimum, decodes "
               "greedily (batch 1, eos disabled, 1 warm-up + --repeats timed runs) and prints tokens/s, time to "
               "first token and per-token latency. Without --model, a random GPT-2 of --size is built here "
               "(this needs the project's own venv, transformers 5).")
    peer.add_model_args(p, "Optimum", default_venv_dir())
    p.add_argument("--prompt", help="comma-separated prompt token ids (default: --prompt-len random ids)")
    add_threads_flag(p, "ONNX Runtime intra-op threads and torch threads")
    p.add_argument("--pad", type=int, default=None, help="pad token id (default the model's pad, else eos, else 0)")
    p.add_argument("--graph-optimization", choices=("disable", "basic", "extended", "all"), default="all",
                   help="ONNX Runtime graph optimisation level, as CPUTarget's (default %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = ensure_venv(args.venv)
    settings = CPUTarget(threads=args.threads, graph_optimization=args.graph_optimization).session_settings()
    with tempfile.TemporaryDirectory(prefix="lts-optimum-model-") as tmp:
        model_dir = peer.model_dir(args, Path(tmp))
        prompt = ([int(x) for x in args.prompt.split(",")] if args.prompt
                  else peer.random_prompts(model_dir, 1, args.prompt_len)[0])
        result = run_optimum(python, model_dir, prompt, args.new_tokens, args.threads, args.repeats, settings,
                             args.timeout, pad_token_id=args.pad)
    peer.print_timings(result, "Optimum ORTModelForCausalLM",
                       f"export {result['export_s']:.1f} s; prompt {len(prompt)} tokens, {args.new_tokens} new, "
                       f"{args.threads} threads, {args.repeats} timed runs after 1 warm-up", args.new_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
