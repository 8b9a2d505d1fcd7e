"""Which tokenizer a run uses (:func:`resolve_tokenizer`), and a GPT-2-style byte-level BPE trained locally
(:func:`train_bpe_tokenizer`) for machines without the hub."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

from lts.core import hub
from lts.train.checkpoint import TOKENIZER_DIR
from lts.train.runtime import Log
from lts.train.settings import TrainSettings


def resolve_tokenizer(settings: TrainSettings, texts: Callable[[], Iterable[str]] | None, log: Log, *,
                      shard_folder: Path | None = None) -> tuple[Any, str, bool]:
    """(tokenizer, where it came from, trained here?).

    Order: --tokenizer, the checkpoint's, the model folder's, the shard folder's (the one that
    wrote its ids), hub gpt2, else a ByteLevel BPE trained on ``texts()``.
    """
    from transformers import AutoTokenizer

    ckpt_tok = settings.checkpoint_dir / TOKENIZER_DIR
    if settings.resume and ckpt_tok.is_dir():
        return hub.load_tokenizer(ckpt_tok), f"{ckpt_tok} (saved with the checkpoint)", False
    name = settings.tokenizer
    if name:
        tok = hub.load_tokenizer(name)  # a folder, or a hub id (cached, or fetched when the hub answers)
        return tok, (str(Path(name)) if hub.is_local(name) else f"{name} (hub)"), False
    if any((settings.model_dir / f).is_file() for f in hub.TOKENIZER_FILES):  # corrupt files: one LTSError
        return hub.load_tokenizer(settings.model_dir), f"{settings.model_dir} (model folder)", False
    if shard_folder is not None:
        from lts.train import shards as sh

        where = shard_folder / sh.TOKENIZER_DIR
        return hub.load_tokenizer(where), f"{where} (shard folder)", False
    if hub.hub_reachable():
        try:
            return AutoTokenizer.from_pretrained("gpt2"), "gpt2 (hub)", False
        except (OSError, ValueError) as exc:
            log(f"could not load the gpt2 tokenizer from the hub ({str(exc).splitlines()[0]}); training one")
    t0 = time.perf_counter()
    tok = train_bpe_tokenizer(texts() if texts is not None else (), vocab_size=settings.tokenizer_vocab)
    return tok, (f"ByteLevel BPE trained here on the training text (vocab {len(tok)}, "
                 f"{time.perf_counter() - t0:.1f} s; no hub and no --tokenizer)"), True


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2) -> Any:
    """Train a ByteLevel BPE tokenizer (GPT-2's scheme) and wrap it for transformers.

    Returns a ``GPT2TokenizerFast`` whose ``<|endoftext|>`` is bos/eos/unk, like GPT-2's.
    Built from the trained object, not from vocab/merges files: transformers 5 silently
    ignores ``vocab_file=``/``merges_file=`` and would yield a one-token tokenizer.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    assert len(tok) == bpe.get_vocab_size(), (len(tok), bpe.get_vocab_size())
    return tok


def builtin_english_text() -> str:
    """~0.8 MB of English that ships with CPython (the pydoc topics), usable offline."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))
