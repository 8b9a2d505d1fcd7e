#!/usr/bin/env python
"""CTranslate2's ``Generator`` as a peer in the greedy-decode benchmark, run in its own venv.

    python benchmarks/ctranslate2_peer.py --model DIR --new-tokens 128 --repeats 3 --threads 2
    python benchmarks/ctranslate2_peer.py --size 2x64 --vocab 512 --new-tokens 16 --repeats 1   # a random GPT-2
    python benchmarks/ctranslate2_peer.py --batch 4 --compute-type int8                           # 4 prompts, int8

CTranslate2 lives in a virtual environment of its own (``--venv``; default ``$LTS_CACHE_DIR/ctranslate2-venv``,
else ``$XDG_CACHE_HOME/lts/ctranslate2-venv``, i.e. ``~/.cache/lts/ctranslate2-venv``), made on first use
by ``benchmarks/_peer_venv.py`` as Optimum's is: the calling interpreter's torch version (without its
``+cpu``-style local label, plain ``torch`` if that is not installable) and transformers version (the
converter loads the model with them), then the newest ctranslate2 and numpy. About 1.3 GB, under a minute
where torch's wheel is at hand (minutes where it is downloaded); a marker file written last (``.lts-ready``,
holding the pins) marks it complete, so an interrupted install is redone, and a change of the pins
reinstalls. The ctranslate2 version is whatever was newest then: it is in every result's ``versions``.

This file is then run under that venv's python in worker mode (``--worker``, used by
:func:`run_ctranslate2`). The worker converts the saved model folder with
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
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))  # _peer_venv, also for the worker (run as a script under the CTranslate2 venv)

import _peer_venv as peer  # noqa: E402

PACKAGES = ("ctranslate2", "transformers", "torch", "numpy")
COMPUTE_TYPES = ("float32", "int8")
STAMPS = ("callback", "none")  # how batch 1 is timed: a generate_batch callback per token, or totals only
# tokenizer files of the source folder that are not linked into the copy the converter reads: ours replaces them
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "chat_template.jinja")


def default_venv_dir() -> Path:
    """``$LTS_CACHE_DIR/ctranslate2-venv``, else ``$XDG_CACHE_HOME/lts/ctranslate2-venv``
    (``~/.cache/lts/ctranslate2-venv``). Called in the project's environment only (never by the worker)."""
    return peer.cache_dir("ctranslate2-venv")


def ensure_venv(path: Path | None = None, log=print) -> Path:
    """The python of a CTranslate2 venv at `path` (default :func:`default_venv_dir`), made or completed if needed.

    Steps, each logged in one line (:func:`_peer_venv.ensure_venv`): ``python -m venv``; ``pip install
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
    """Convert and time `model_dir` with CTranslate2 in worker mode under the venv's `python`; the worker's JSON.

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
    argv = ["--model", str(model_dir), "--prompts", json.dumps([[int(i) for i in row] for row in prompts]),
            "--new-tokens", str(new_tokens), "--threads", str(threads), "--repeats", str(repeats),
            "--compute-type", compute_type, "--stamp", stamp]
    if eos_token_id is not None:
        argv += ["--eos", str(eos_token_id)]
    return peer.run_worker(python, HERE, argv, timeout_s, "CTranslate2")


def _model_copy_with_tokenizer(model_dir: Path, out_dir: Path, vocab: int, eos: int) -> None:
    """`model_dir`'s files linked into `out_dir` (its tokenizer files left out), and a WordLevel tokenizer
    ``t0`` .. ``t{vocab-1}`` at ids 0 .. vocab-1 saved there, bos = eos = unk = ``t{eos}``."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    out_dir.mkdir(parents=True)
    for item in Path(model_dir).resolve().iterdir():
        if item.name not in TOKENIZER_FILES:
            os.symlink(item, out_dir / item.name)
    special = f"t{eos}"
    word_level = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(vocab)}, unk_token=special))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token=special, eos_token=special,
                                        unk_token=special)
    if tokenizer.convert_ids_to_tokens(list(range(vocab))) != [f"t{i}" for i in range(vocab)]:
        raise RuntimeError("the WordLevel tokenizer does not map id i to t{i}")
    tokenizer.save_pretrained(out_dir)


def _measure(args: argparse.Namespace) -> dict:
    """The worker's work, under the CTranslate2 venv: tokenizer, conversion, load, warm-up, timed runs."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    import ctranslate2
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)  # the converter loads the model with torch

    prompts = [[int(i) for i in row] for row in json.loads(args.prompts)]
    if not prompts or not prompts[0] or len({len(row) for row in prompts}) != 1:
        raise ValueError("--prompts: a non-empty list of equally long, non-empty id lists")
    config = json.loads((Path(args.model) / "config.json").read_text(encoding="utf-8"))
    vocab = int(config["vocab_size"])
    eos = args.eos
    if eos is None:
        eos = config.get("eos_token_id")
        eos = eos[0] if isinstance(eos, list) and eos else eos
        eos = eos if isinstance(eos, int) else vocab - 1
    if not all(0 <= i < vocab for row in prompts for i in row) or not 0 <= eos < vocab:
        raise ValueError(f"prompt ids and the eos id must lie in [0, {vocab})")

    with tempfile.TemporaryDirectory(prefix="lts-ctranslate2-") as tmp:
        hf_dir, ct2_dir = Path(tmp) / "hf", Path(tmp) / "ct2"
        _model_copy_with_tokenizer(Path(args.model), hf_dir, vocab, eos)
        t0 = time.perf_counter()
        TransformersConverter(str(hf_dir)).convert(str(ct2_dir), quantization=None, force=True)
        convert_s = time.perf_counter() - t0
        tokens = json.loads((ct2_dir / "vocabulary.json").read_text(encoding="utf-8"))
        if tokens != [f"t{i}" for i in range(vocab)]:
            raise RuntimeError(f"the converted vocabulary does not map id i to t{{i}} (size {len(tokens)}, "
                               f"starts {tokens[:3]})")
        generator = ctranslate2.Generator(str(ct2_dir), device="cpu", compute_type=args.compute_type,
                                          intra_threads=args.threads, inter_threads=1)
    loaded = generator.compute_type
    if not loaded.startswith(args.compute_type):  # int8 loads as int8_float32 on CPU
        raise RuntimeError(f"asked for compute type {args.compute_type}, CTranslate2 loaded {loaded}")

    start_tokens = [[tokens[i] for i in row] for row in prompts]
    n = args.new_tokens
    # eos disabled: end_token=[] is no end token at all (min_length alone would mask eos's logit instead)
    decode = dict(beam_size=1, sampling_topk=1, include_prompt_in_result=False, min_length=n, max_length=n,
                  end_token=[])
    stamp = args.stamp if len(prompts) == 1 else "none"

    def run() -> tuple[list[list[int]], float, list[float]]:
        times: list[float] = []
        if stamp == "callback":
            def on_token(step) -> bool:  # called from CTranslate2's thread, the GIL taken for it
                times.append(time.perf_counter() - start)
                return False  # True would stop this row

            start = time.perf_counter()
            results = generator.generate_batch(start_tokens, callback=on_token, **decode)
        else:
            start = time.perf_counter()
            results = generator.generate_batch(start_tokens, **decode)
        total = time.perf_counter() - start
        return [list(r.sequences_ids[0]) for r in results], total, times

    run()  # warm-up
    totals, firsts, per_token, new_ids = [], [], [], []
    for _ in range(args.repeats):
        new_ids, total, times = run()
        totals.append(total)
        if stamp == "callback":
            if len(times) != n:
                raise RuntimeError(f"the callback stamped {len(times)} tokens, not {n}")
            firsts.append(times[0])
            per_token += [b - a for a, b in zip(times, times[1:])]
    made = sorted({len(row) for row in new_ids})
    if made != [n]:
        raise RuntimeError(f"CTranslate2 made {made} tokens per row, not {n}")

    options = {
        "compute_type": args.compute_type,
        "compute_type_loaded": loaded,
        "quantization": None,  # at conversion: float32 on disk; int8 quantizes the weights on load
        "intra_threads": args.threads,
        "inter_threads": 1,
        "device": "cpu",
        "stamped": ("generate_batch callback per token, on the timed call" if stamp == "callback"
                    else "not stamped: generate_batch without callback, totals only"),
        "decode": {**decode, "batch": len(prompts)},
        "supported_compute_types": sorted(ctranslate2.get_supported_compute_types("cpu")),
        "torch_threads": torch.get_num_threads(),
        "eos_token": tokens[eos],
    }
    return {"ids": [p + list(map(int, r)) for p, r in zip(prompts, new_ids)], "totals": totals, "firsts": firsts,
            "per_token": per_token, "convert_s": convert_s,
            "versions": {name: peer.dist_version(name) for name in PACKAGES}, "options": options}


def _worker(args: argparse.Namespace) -> int:
    """Run _measure with fd 1 pointed at stderr (nothing, not even C++ code, can print on stdout), then the JSON."""
    return peer.worker_main(lambda: _measure(args))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Makes the CTranslate2 venv on first use (~1.3 GB), converts the model, decodes greedily (eos "
               "disabled, 1 warm-up + --repeats timed runs) and prints tokens/s and, at batch 1, time to first "
               "token and per-token latency. Without --model, a random GPT-2 of --size is built here (this needs "
               "the project's own venv).")
    peer.add_model_args(p, "CTranslate2", default_venv_dir())
    p.add_argument("--prompt", help="comma-separated prompt token ids (batch 1)")
    p.add_argument("--prompts", help="the batch as JSON, a list of equally long id lists (e.g. '[[1,2],[3,4]]')")
    p.add_argument("--prompt-len", type=int, default=16, help="without --prompt(s): random prompts this long")
    p.add_argument("--batch", type=int, default=1, help="without --prompt(s): this many random prompts")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="CTranslate2 intra_threads and torch threads (default min(2, cores))")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compute-type", choices=COMPUTE_TYPES, default="float32",
                   help="float32, or int8 (weights quantized on load) (default %(default)s)")
    p.add_argument("--eos", type=int, default=None, help="the eos id (default the model's eos, else the last id)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds the worker may run (default %(default)s)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--stamp", choices=STAMPS, default="callback",
                   help="batch 1: stamp each token with a generate_batch callback (time to first token, per-token "
                        "latency), or none: totals only, without the callback (default %(default)s)")
    args = p.parse_args(argv)

    if args.prompt and not args.prompts:
        args.prompts = json.dumps([[int(x) for x in args.prompt.split(",")]])
    if args.worker:
        if args.model is None or args.prompts is None:
            p.error("--worker needs --model and --prompts")
        return _worker(args)

    import numpy as np

    python = ensure_venv(args.venv)
    with tempfile.TemporaryDirectory(prefix="lts-ctranslate2-model-") as tmp:
        model_dir = args.model or peer.random_model(args.size, args.vocab, Path(tmp) / "model")
        if args.prompts:
            prompts = [[int(i) for i in row] for row in json.loads(args.prompts)]
        else:
            vocab = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))["vocab_size"]
            rng = np.random.default_rng(0)
            prompts = [[int(x) for x in rng.integers(0, vocab - 1, size=args.prompt_len)] for _ in range(args.batch)]
        result = run_ctranslate2(python, model_dir, prompts, args.new_tokens, args.threads, args.repeats,
                                 args.compute_type, args.timeout, eos_token_id=args.eos, stamp=args.stamp)
    print("# CTranslate2 Generator: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print(f"# options: {json.dumps(result['options'])}")
    print(f"convert {result['convert_s']:.2f} s; batch {len(prompts)}, prompt {len(prompts[0])} tokens, "
          f"{args.new_tokens} new, {args.threads} threads, {args.repeats} timed runs after 1 warm-up")
    line = f"tokens/s {len(prompts) * args.new_tokens / statistics.median(result['totals']):.1f}"
    if result["firsts"]:
        gaps = result["per_token"] or [float("nan")]
        p50, p90 = (float(np.percentile(gaps, q)) * 1000 for q in (50, 90))
        line += (f"; time to first token {statistics.median(result['firsts']) * 1000:.1f} ms; per-token p50 "
                 f"{p50:.2f} ms, p90 {p90:.2f} ms")
    print(line)
    for row in result["ids"]:
        print("ids: " + ",".join(map(str, row)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
