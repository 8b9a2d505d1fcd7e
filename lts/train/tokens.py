"""A run's training and validation tokens (:func:`prepare_tokens`): in memory, or in memory-mapped shards
(:mod:`lts.train.shards`) that rank 0 writes once; with the tokenizer that made them
(:func:`lts.train.tokenizer.resolve_tokenizer`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lts.core.settings import must_match
from lts.train.runtime import Log, Runtime
from lts.train.settings import TrainSettings
from lts.train.tokenizer import resolve_tokenizer


@dataclass
class Tokens:
    """A run's token streams (in memory, or memory-mapped shards) and where they came from."""

    train: Any
    validation: Any
    corpus: str
    tokenizer: Any
    tokenizer_source: str
    tokenizer_trained: bool


def shard_source(settings: TrainSettings) -> dict[str, Any]:
    """What a shard folder records as its corpus (compared when it is reused with data flags)."""
    data = must_match(settings)
    keep = ("data", "dataset", "dataset_config", "text_column", "corpus", "val_fraction")
    return {**{k: data[k] for k in keep}, "streaming": settings.streaming}


def prepare_tokens(settings: TrainSettings, rt: Runtime, log: Log) -> Tokens:
    """The training and validation tokens, every rank alike.

    In memory (no --shards): each rank reads and tokenizes the corpus (rank 0 picks the
    tokenizer, and trains it if it must, then hands it to the others). With --shards: rank 0
    tokenizes into the folder once (streaming with --streaming), every rank memory-maps it.
    """
    if not settings.shards:
        return _in_memory(settings, rt, log)
    from lts.train import shards as sh

    folder = Path(settings.shards)
    tok, source, trained = rt.from_main(lambda: _write_or_check_shards(settings, folder, log))
    meta = sh.read_meta(folder)  # every rank reads the folder rank 0 wrote or checked
    return Tokens(sh.open_split(folder, meta, "train"), sh.open_split(folder, meta, "validation"),
                  f"{meta['source'].get('name')} (shards in {folder})", tok, source, trained)


def _corpus(settings: TrainSettings) -> Any:
    from lts.train.data import load_corpus

    return load_corpus(dataset=settings.dataset, dataset_config=settings.dataset_config, data_files=settings.data,
                       text_column=settings.text_column, corpus=settings.corpus, val_fraction=settings.val_fraction)


def _in_memory(settings: TrainSettings, rt: Runtime, log: Log) -> Tokens:
    from lts.train.data import tokenize_stream

    c = _corpus(settings)  # a bad corpus fails here, before any tokenizer is trained
    tok, source, trained = rt.from_main(lambda: resolve_tokenizer(settings, lambda: c.train, log))
    return Tokens(tokenize_stream(tok, c.train), tokenize_stream(tok, c.validation), c.name, tok, source, trained)


def _write_or_check_shards(settings: TrainSettings, folder: Path, log: Log) -> tuple[Any, str, bool]:
    """On rank 0: check a shard folder written earlier against the data flags, or tokenize the corpus into it;
    returns the tokenizer as :func:`resolve_tokenizer` does."""
    from lts.train import shards as sh
    from lts.train.data import stream_documents

    wanted = shard_source(settings)
    if (folder / sh.META_FILE).is_file():
        meta = sh.read_meta(folder)
        tok, source, trained = resolve_tokenizer(settings, None, log, shard_folder=folder)
        explicit = bool(settings.data or settings.dataset)
        sh.check_compatible(folder, meta, tok, wanted if explicit else meta["source"])
        log(f"shards: {folder} (written earlier: {meta['splits']['train']['tokens']:,} train tokens)")
        return tok, source, trained

    def documents() -> tuple[str, dict[str, Any]]:
        if settings.streaming:
            return stream_documents(dataset=settings.dataset, dataset_config=settings.dataset_config,
                                    data_files=settings.data, text_column=settings.text_column,
                                    val_fraction=settings.val_fraction)
        c = _corpus(settings)
        return c.name, {"train": c.train, "validation": c.validation}

    name, docs = documents()
    # a stream is read once per pass: a tokenizer trained here reads its own
    tok, source, trained = resolve_tokenizer(
        settings, (lambda: documents()[1]["train"]) if settings.streaming else (lambda: docs["train"]), log)
    t0 = time.perf_counter()
    sh.write_shards(folder, tok, docs, {**wanted, "name": name}, shard_tokens=settings.shard_tokens,
                    progress=settings.progress)
    log(f"shards: tokenized {name} into {folder} in {time.perf_counter() - t0:.1f} s")
    return tok, source, trained
