"""``lts generate`` (and ``python generate_text.py``): the flags of text generation, and its main.

    lts generate gpt2 gpt2 "The meaning of life is"
    lts generate models/trained/gpt2_xxx models/trained/gpt2_xxx "Once" --backend onnx --greedy -v
    lts generate MODEL TOKENIZER --prompts-file prompts.txt --batch-size 16 --backend onnx --greedy

Prints the prompt and its continuation. Settings: configs/generate.yaml < --config FILE < flags.
"""

from __future__ import annotations

import logging
import sys

from lts.core.cli import ArgumentParser, build_settings, default_preset, load_preset
from lts.cost.quantize import PRECISIONS
from lts.cost.target import TARGETS

DESCRIPTION = "Generate text with a causal LM from the hub (`gpt2`) or a local folder (e.g. a train.py output)."


def _settings() -> type:
    from lts.generate.decode import GenerateSettings

    return GenerateSettings


def parse_args(argv: list[str] | None, prog: str | None = None) -> tuple[dict, dict, str | None]:
    """(flags, preset, --config or None); `prog` names the program in usage and errors (default: generate_text.py)."""
    p = ArgumentParser(prog=prog or "generate_text.py", description=DESCRIPTION, settings=_settings,
                       preset="generate")
    p.add_argument("model", help="hub id (gpt2) or model folder")
    p.add_argument("tokenizer", help="hub id (gpt2) or folder with tokenizer files (often the model folder)")
    p.add_argument("prompt", nargs="?", default=None, help="text to continue (or --prompts-file)")
    p.add_argument("--prompts-file", default=None, help="a text file with one prompt per line (blank lines skipped), "
                   "generated in batches; each prompt's greedy output is what it gets alone")
    p.add_argument("--batch-size", type=int, default=None,
                   help="with --prompts-file: prompts per batch, left-padded with an attention mask (default 8)")
    p.add_argument("--config", default=None, help="YAML preset (default configs/generate.yaml)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature > 0")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens; 0 disables")
    p.add_argument("--greedy", action="store_true", default=None, help="always take the most likely token")
    p.add_argument("--seed", type=int, default=None, help="same seed => same text (default: random)")
    p.add_argument("-n", "--num-return-sequences", type=int, default=None, help="sequences to sample")
    p.add_argument("--backend", choices=("torch", "onnx"), default=None,
                   help="torch: transformers' generate; onnx: ONNX Runtime with a KV cache (exported once, cached)")
    p.add_argument("--stream", action="store_true", default=None, help="print tokens as they come")
    p.add_argument("-v", "--verbose", action="store_true", default=None,
                   help="report load time, time to first token and tokens/s on stderr")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="with --backend onnx: int8 quantizes the weight matrices (ONNX Runtime dynamic "
                        "quantization; cached beside the fp32 graph)")
    p.add_argument("--target", choices=sorted(TARGETS), default=None,
                   help="with --backend onnx: where the graph runs (the Target the search measures on)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for either backend (default: torch's)")
    p.add_argument("--truncate-prompt", action="store_true", default=None,
                   help="keep the prompt's last tokens when it does not fit the context (default: refuse)")
    p.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow code shipped with the model to run (only for sources you trust)")
    p.add_argument("--onnx-cache-dir", default=None, help="where ONNX exports are kept "
                   "(default onnx/ in the cache root: $LTS_CACHE_DIR, else $XDG_CACHE_HOME/lts, else ~/.cache/lts)")
    args = vars(p.parse_args(argv))
    config = args.pop("config")
    return args, load_preset(config or default_preset("generate"), required=config is not None), config


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Generate as the flags in `argv` (default: ``sys.argv[1:]``) say: the text on stdout, timings on stderr."""
    flags, preset, config = parse_args(argv, prog)
    from lts.generate.decode import GenerateSettings, describe, run

    settings = build_settings(GenerateSettings, preset, flags, source=config or "configs/generate.yaml")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # no progress bars / advice on stderr: one line there means an error
    hf_logging.disable_progress_bar()
    if settings.verbose:
        logging.getLogger("lts").setLevel(logging.INFO)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    result = run(settings, on_text=write)
    if not settings.stream:
        kind = "prompt" if settings.prompts_file is not None else "sequence"
        for i, text in enumerate(result.texts):
            if len(result.texts) > 1:
                print(f"=== {kind} {i + 1}/{len(result.texts)} ===")
            print(text)
    if settings.verbose:
        print(describe(result), file=sys.stderr)
    return 0

