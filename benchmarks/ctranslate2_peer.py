#!/usr/bin/env python
"""CTranslate2's ``Generator`` as a peer in the greedy-decode benchmark, run in its own venv.

    python -m benchmarks.ctranslate2_peer --model DIR --new-tokens 128 --repeats 3 --threads 2
    python -m benchmarks.ctranslate2_peer --size 2x64 --vocab 512 --new-tokens 16 --repeats 1   # a random GPT-2
    python -m benchmarks.ctranslate2_peer --batch 4 --compute-type int8                           # 4 prompts, int8

CTranslate2 lives in a virtual environment of its own (``--venv``; default ``$LTS_CACHE_DIR/ctranslate2-venv``,
else ``$XDG_CACHE_HOME/lts/ctranslate2-venv``, i.e. ``~/.cache/lts/ctranslate2-venv``), made on first use
by ``benchmarks/_peer_venv.py`` as Optimum's is: the calling interpreter's torch version (without its
``+cpu``-style local label, plain ``torch`` if that is not installable) and transformers version (the
converter loads the model with them), then the newest ctranslate2 and numpy. About 1.3 GB, under a minute
where torch's wheel is at hand (minutes where it is downloaded); a marker file written last (``.lts-ready``,
holding the pins) marks it complete, so an interrupted install is redone, and a change of the pins
reinstalls. The ctranslate2 version is whatever was newest then: it is in every result's ``versions``.

Its worker, ``benchmarks/_ctranslate2_worker.py``, is then run under that venv's python (``python -m
benchmarks._ctranslate2_worker``, by :func:`run_ctranslate2`). The worker converts the saved model folder with
``ctranslate2.converters.TransformersConverter`` (no quantization at conversion: float32 weights on disk),
timed apart as ``convert_s`` (the converter's call alone; the first in a process, so it includes loading
transformers' model code), and loads it with ``ctranslate2.Generator(dir, device="cpu",
compute_type=float32|int8, intra_threads=threads, inter_threads=1)``. ``int8`` quantizes the weight
matrices on load (CTranslate2 reports ``int8_float32``: int8 weights, float32 activations); checked on a
random GPT-2: the log-probabilities are bit-identical to converting with ``quantization="int8"``.

The converter takes the vocabulary from a tokenizer in the model folder (without one: "Vocabulary has
size 1 but the model expected a vocabulary of size V"), and the benchmark's random GPT-2s have none, so
the worker converts a copy of the folder (the files linked, not copied) into which it saves a
``PreTrainedTokenizerFast`` around a ``tokenizers`` WordLevel model with the tokens ``t0`` .. ``t{V-1}``
at ids 0 .. V-1 (bos, eos and unk: the eos id's token, V-1 in the benchmark), and checks that the
converted vocabulary maps id i to ``t{i}``: so CTranslate2's ids are the model's ids, and the prompts,
given as id lists, go in as those tokens.

It decodes greedily as benchmarks/generation.py times its own backends: a batch of equally long prompts
(1, 4, 16, ...) with ``generate_batch(beam_size=1, sampling_topk=1, include_prompt_in_result=False,
min_length=N, max_length=N, end_token=[])``, one warm-up, then `repeats` timed runs. Eos is disabled by
``end_token=[]`` (no end token at all), so every row makes exactly N = `new_tokens` tokens and eos is a
token like any, as ``generate(eos_token_id=None)``; ``min_length`` alone would not do: it masks eos's
logit, so a row whose greedy token is eos would go elsewhere. With ``include_prompt_in_result=False``
the prompt (less its last token) is run at once to fill the KV cache and ``max_length`` counts only
the new tokens (with the default ``True``, ``max_length`` also counts the prompt less its first token).
At batch 1 a ``callback`` on the same ``generate_batch`` call stamps each token (the total is timed on
that call too, as Optimum's is with its streamer), giving the time to first token and the gaps between
tokens; at larger batches the call has no callback and only totals are timed. The callback costs
CTranslate2's thread a GIL take and a Python call per token: about 20 us a token (a 2x64 GPT-2, 8 tokens:
0.40-0.50 ms a run with it, 0.23-0.25 ms without), little next to a real model's step; ``--stamp none``
(``stamp="none"``) times batch 1 without it, totals only. ``generate_tokens``, the streaming iterator, is
not used: it runs ``generate_batch`` asynchronously with such a callback feeding a queue that the caller's
thread reads, so a stamp taken there comes after that hand-off. The worker checks every row got exactly N
tokens, and prints one JSON line on stdout (warnings and logs go to stderr).
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
from benchmarks._ctranslate2_worker import COMPUTE_TYPES, PACKAGES, STAMPS

WORKER = "benchmarks._ctranslate2_worker"


def default_venv_dir() -> Path:
    """``$LTS_CACHE_DIR/ctranslate2-venv``, else ``$XDG_CACHE_HOME/lts/ctranslate2-venv``
    (``~/.cache/lts/ctranslate2-venv``)."""
    return peer.cache_dir("ctranslate2-venv")


def ensure_venv(path: Path | None = None, log: Callable[[str], object] = print) -> Path:
    """The python of a CTranslate2 venv at `path` (default :func:`default_venv_dir`), made or completed if needed.

    Steps, each logged in one line (:func:`benchmarks._peer_venv.ensure_venv`): ``python -m venv``; ``pip install
    torch==<ours>`` (plain ``torch`` if that version is not installable there); ``pip install
    transformers==<ours> ctranslate2 numpy`` (torch pinned again so pip keeps it; ctranslate2 the newest).
    The marker file, holding the caller's torch and transformers versions, goes last. Refuses a non-empty
    folder that is not a venv rather than clearing it.
    """
    pins = peer.caller_pins(("torch", "transformers"))
    transformers_spec = peer.spec("transformers", pins["transformers"])
    return peer.ensure_venv(
        Path(path) if path else default_venv_dir(), label="ctranslate2", pins=pins, packages=PACKAGES, log=log,
        installs=[(f"installing {transformers_spec}, ctranslate2 and numpy (the converter loads the model with "
                   "transformers)", [transformers_spec, "ctranslate2", "numpy"])])


def venv_versions(python: Path) -> dict[str, str | None]:
    """The installed versions of ctranslate2, transformers, torch and numpy under `python`."""
    return peer.venv_versions(python, PACKAGES)


def run_ctranslate2(python: Path, model_dir: Path, prompts: list[list[int]], new_tokens: int, threads: int,
                    repeats: int, compute_type: str, timeout_s: float = 1800, *,
                    eos_token_id: int | None = None, stamp: str = "callback") -> dict:
    """Convert and time `model_dir` with CTranslate2 in its worker under the venv's `python`; the worker's JSON.

    `prompts`: the batch, one list of ids per row, all equally long. `compute_type`: ``float32`` or ``int8``.
    ``{"ids": [prompt + new ids, per row], "totals": [s per timed run], "firsts": [time to first token s per
    run], "per_token": [every gap between tokens s], "convert_s": s, "versions": {...}, "options": {...}}``;
    ``firsts`` and ``per_token`` only at batch 1 (empty otherwise); ``options`` says how CTranslate2 was set
    up (compute type asked for and loaded, quantization at conversion, threads, decode options, how the
    tokens were stamped). `eos_token_id`: the id whose token is the tokenizer's bos/eos/unk (default the
    model's eos, else the last id); eos is disabled in decoding either way. `stamp`: ``"none"`` times batch 1
    without the per-token callback (totals only).
    Raises RuntimeError with the tail of the worker's stderr if it fails or prints no result.
    """
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f"compute_type {compute_type!r}: one of {', '.join(COMPUTE_TYPES)}")
    if stamp not in STAMPS:
        raise ValueError(f"stamp {stamp!r}: one of {', '.join(STAMPS)}")
    rows = json.dumps([[int(i) for i in row] for row in prompts])
    argv = ["--model", str(Path(model_dir).resolve()), "--prompts", rows, "--new-tokens", str(new_tokens),
            "--threads", str(threads), "--repeats", str(repeats), "--compute-type", compute_type, "--stamp", stamp]
    if eos_token_id is not None:
        argv += ["--eos", str(eos_token_id)]
    return peer.run_worker(python, WORKER, argv, timeout_s, "CTranslate2")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Makes the CTranslate2 venv on first use (~1.3 GB), converts the model, decodes greedily (eos "
               "disabled, 1 warm-up + --repeats timed runs) and prints tokens/s and, at batch 1, time to first "
               "token and per-token latency. Without --model, a random GPT-2 of --size is built here (this needs "
               "the project's own venv).")
    peer.add_model_args(p, "CTranslate2", default_venv_dir())
    p.add_argument("--prompt", help="comma-separated prompt token ids (batch 1)")
    p.add_argument("--prompts", help="the batch as JSON, a list of equally long id lists (e.g. '[[1,2],[3,4]]')")
    p.add_argument("--batch", type=int, default=1, help="without --prompt(s): this many random prompts")
    add_threads_flag(p, "CTranslate2 intra_threads and torch threads")
    p.add_argument("--compute-type", choices=COMPUTE_TYPES, default="float32",
                   help="float32, or int8 (weights quantized on load) (default %(default)s)")
    p.add_argument("--eos", type=int, default=None, help="the eos id (default the model's eos, else the last id)")
    p.add_argument("--stamp", choices=STAMPS, default="callback",
                   help="batch 1: stamp each token with a generate_batch callback (time to first token, per-token "
                        "latency), or none: totals only, without the callback (default %(default)s)")
    args = p.parse_args(argv)
    if args.prompt and not args.prompts:
        args.prompts = json.dumps([[int(x) for x in args.prompt.split(",")]])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = ensure_venv(args.venv)
    with tempfile.TemporaryDirectory(prefix="lts-ctranslate2-model-") as tmp:
        model_dir = peer.model_dir(args, Path(tmp))
        prompts = ([[int(i) for i in row] for row in json.loads(args.prompts)] if args.prompts
                   else peer.random_prompts(model_dir, args.batch, args.prompt_len))
        result = run_ctranslate2(python, model_dir, prompts, args.new_tokens, args.threads, args.repeats,
                                 args.compute_type, args.timeout, eos_token_id=args.eos, stamp=args.stamp)
    peer.print_timings(result, "CTranslate2 Generator",
                       f"convert {result['convert_s']:.2f} s; batch {len(prompts)}, prompt {len(prompts[0])} tokens, "
                       f"{args.new_tokens} new, {args.threads} threads, {args.repeats} timed runs after 1 warm-up",
                       len(prompts) * args.new_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
