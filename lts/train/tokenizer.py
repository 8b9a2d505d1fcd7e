"""A GPT-2-style byte-level BPE tokenizer trained locally, for machines without the hub."""

from __future__ import annotations

from typing import Any, Iterable


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
