"""The CTranslate2 peer's worker (benchmarks/ctranslate2_peer.py has the whole story), run inside the CTranslate2
venv as ``python -m benchmarks._ctranslate2_worker --model DIR --prompts JSON ...`` by
:func:`benchmarks.ctranslate2_peer.run_ctranslate2`.

It links the saved model folder into a copy with a WordLevel tokenizer ``t0`` .. ``t{V-1}``, converts that with
``TransformersConverter`` (timed apart as ``convert_s``), loads a ``Generator`` at the compute type asked for,
decodes the batch greedily (eos disabled, one warm-up, then `repeats` timed runs; at batch 1 a callback stamps
each token) and prints one JSON line on stdout. Only the standard library at import time: the venv has
ctranslate2, transformers, torch and numpy, and nothing of this project.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._peer_worker import dist_version, quiet_libraries, worker_main

PACKAGES = ("ctranslate2", "transformers", "torch", "numpy")
COMPUTE_TYPES = ("float32", "int8")
STAMPS = ("callback", "none")  # how batch 1 is timed: a generate_batch callback per token, or totals only
# tokenizer files of the source folder that are not linked into the copy the converter reads: ours replaces them
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "chat_template.jinja")


def model_copy_with_tokenizer(model_dir: Path, out_dir: Path, vocab: int, eos: int) -> None:
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


def checked_inputs(args: argparse.Namespace) -> tuple[list[list[int]], int, int]:
    """(the prompts, the vocabulary size, the eos id: ``--eos``, else the model's eos, else the last id)."""
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
    return prompts, vocab, eos


def convert_and_load(model: str, vocab: int, eos: int, compute_type: str, threads: int) -> tuple[Any, list, float]:
    """(the Generator at `compute_type`, the converted vocabulary, seconds the conversion took)."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    with tempfile.TemporaryDirectory(prefix="lts-ctranslate2-") as tmp:
        hf_dir, ct2_dir = Path(tmp) / "hf", Path(tmp) / "ct2"
        model_copy_with_tokenizer(Path(model), hf_dir, vocab, eos)
        t0 = time.perf_counter()
        TransformersConverter(str(hf_dir)).convert(str(ct2_dir), quantization=None, force=True)
        convert_s = time.perf_counter() - t0
        tokens = json.loads((ct2_dir / "vocabulary.json").read_text(encoding="utf-8"))
        if tokens != [f"t{i}" for i in range(vocab)]:
            raise RuntimeError(f"the converted vocabulary does not map id i to t{{i}} (size {len(tokens)}, "
                               f"starts {tokens[:3]})")
        generator = ctranslate2.Generator(str(ct2_dir), device="cpu", compute_type=compute_type,
                                          intra_threads=threads, inter_threads=1)
    if not generator.compute_type.startswith(compute_type):  # int8 loads as int8_float32 on CPU
        raise RuntimeError(f"asked for compute type {compute_type}, CTranslate2 loaded {generator.compute_type}")
    return generator, tokens, convert_s


def time_decode(generator: Any, start_tokens: list[list[str]], decode: dict, stamp: str, repeats: int,
                n: int) -> dict[str, list]:
    """One warm-up, then `repeats` timed ``generate_batch`` calls; the new ids of every row and the timings."""
    def run() -> tuple[list[list[int]], float, list[float]]:
        times: list[float] = []
        if stamp == "callback":
            def on_token(step: Any) -> bool:  # called from CTranslate2's thread, the GIL taken for it
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
    for _ in range(repeats):
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
    return {"new_ids": new_ids, "totals": totals, "firsts": firsts, "per_token": per_token}


def measure(args: argparse.Namespace) -> dict:
    """Tokenizer, conversion, load, warm-up, timed runs: ``{"ids", "totals", "firsts", "per_token", "convert_s",
    "versions", "options"}``."""
    quiet_libraries()
    import ctranslate2
    import torch

    torch.set_num_threads(args.threads)  # the converter loads the model with torch
    prompts, vocab, eos = checked_inputs(args)
    generator, tokens, convert_s = convert_and_load(args.model, vocab, eos, args.compute_type, args.threads)
    n = args.new_tokens
    # eos disabled: end_token=[] is no end token at all (min_length alone would mask eos's logit instead)
    decode = dict(beam_size=1, sampling_topk=1, include_prompt_in_result=False, min_length=n, max_length=n,
                  end_token=[])
    stamp = args.stamp if len(prompts) == 1 else "none"
    timed = time_decode(generator, [[tokens[i] for i in row] for row in prompts], decode, stamp, args.repeats, n)
    options = {
        "compute_type": args.compute_type,
        "compute_type_loaded": generator.compute_type,
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
    return {"ids": [p + list(map(int, r)) for p, r in zip(prompts, timed["new_ids"])], "totals": timed["totals"],
            "firsts": timed["firsts"], "per_token": timed["per_token"], "convert_s": convert_s,
            "versions": {name: dist_version(name) for name in PACKAGES}, "options": options}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="CTranslate2's worker, run inside its venv by benchmarks.ctranslate2_peer.")
    p.add_argument("--model", required=True, help="a saved transformers GPT-2 folder")
    p.add_argument("--prompts", required=True, help="the batch as JSON, a list of equally long id lists")
    p.add_argument("--new-tokens", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--compute-type", choices=COMPUTE_TYPES, required=True)
    p.add_argument("--stamp", choices=STAMPS, default="callback")
    p.add_argument("--eos", type=int, default=None, help="the eos id (default the model's eos, else the last id)")
    args = p.parse_args(argv)
    return worker_main(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
