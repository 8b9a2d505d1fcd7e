"""``lts generate`` (and ``python generate_text.py``): the flags of text generation, and its main.

    lts generate gpt2 gpt2 "The meaning of life is"
    lts generate models/trained/gpt2_xxx models/trained/gpt2_xxx "Once" --backend onnx --greedy -v
    lts generate MODEL TOKENIZER --prompts-file prompts.txt --batch-size 16 --backend onnx --greedy

Prints the prompt and its continuation. Settings: declared in GenerateSettings (`-h` lists them) < --config FILE
< flags.
"""

from __future__ import annotations

import argparse
import logging
import sys

from lts.core.cli import ArgumentParser
from lts.generate.decode import GenerateSettings, describe, run

SETTINGS = GenerateSettings  # every setting, declared once (lts.core.settings)
DESCRIPTION = "Generate text with a causal LM from the hub (`gpt2`) or a local folder (e.g. a train.py output)."


def parse_args(argv: list[str] | None, prog: str | None = None) -> tuple[ArgumentParser, argparse.Namespace]:
    """The parser and the parsed flags; `prog` names the program in usage and errors (default: generate_text.py).
    Every setting's flag comes from its declaration in :class:`lts.generate.decode.GenerateSettings`."""
    p = ArgumentParser(prog=prog or "generate_text.py", description=DESCRIPTION, settings=GenerateSettings,
                       preset="generate")
    return p, p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Generate as the flags in `argv` (default: ``sys.argv[1:]``) say: the text on stdout, timings on stderr."""
    parser, args = parse_args(argv, prog)
    settings = parser.settings_from(args)
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

