"""``lts train`` (and ``python train.py``): the flags of a training run, and its main.

Train one searched architecture for real: ``lts train models/<archid>``. The trained model has exactly
the shape in the folder's config.json (only vocab_size follows the tokenizer). With no data flag it
trains on an offline corpus that ships with an installed package; with no tokenizer and no hub it
trains a ByteLevel BPE tokenizer. Settings: declared in TrainSettings (`-h` lists them), a preset (--config FILE)
and flags.
"""

from __future__ import annotations

import argparse

from lts.core.cli import ArgumentParser
from lts.train.settings import TrainSettings

SETTINGS = TrainSettings  # every setting, declared once (lts.core.settings)


def parse_args(argv: list[str] | None, prog: str | None = None) -> tuple[ArgumentParser, argparse.Namespace]:
    """The parser and the parsed flags; `prog` names the program in usage and errors (default: train.py). Every
    setting's flag comes from its declaration in :class:`lts.train.settings.TrainSettings`."""
    p = ArgumentParser(prog=prog or "train.py", description="Train a GPT-2 architecture (a models/<archid> folder) "
                       "and save a transformers model folder + train_metrics.json.", settings=TrainSettings,
                       preset="train")
    return p, p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Train the model folder named in `argv` (default: ``sys.argv[1:]``) with its settings."""
    parser, args = parse_args(argv, prog)
    from lts.core.hub import go_offline_if_hub_unreachable
    from lts.train.run import train

    settings = parser.settings_from(args)
    from lts.train.runtime import is_main_process

    if go_offline_if_hub_unreachable() and is_main_process():
        print("hub: not reachable, working offline")
    train(settings, log=print)
    return 0

