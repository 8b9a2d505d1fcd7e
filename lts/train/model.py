"""The model a run trains: the model folder's architecture, exactly (only ``vocab_size`` follows the tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lts.families import HF_BOOKKEEPING, Arch, arch_from_dict, with_fields
from lts.train.runtime import Log, Runtime
from lts.train.settings import TrainSettings


def build_model_config(model_dir: Path, arch: Arch, vocab_size: int, eos_id: int, dropout: float | None) -> Any:
    """The folder's config (its family's: GPT2Config or the per-layer one for a GPT-2, a stock LlamaConfig for a
    Llama, written by hand or by LTS) with vocab_size set to the tokenizer's; every other field as written, but the LM
    head's tying: as the architecture says."""
    data = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    shaped = with_fields(arch, vocab_size=vocab_size)
    # tied or not as the architecture says (a Llama's is one of its fields; GPT-2's config ties it always)
    fields = {k: v for k, v in data.items() if k not in HF_BOOKKEEPING and k != "tie_word_embeddings"}
    fields.update(shaped.to_dict(), bos_token_id=eos_id, eos_token_id=eos_id)
    if dropout is not None:
        fields.update(dict.fromkeys(arch.family.dropout_fields, float(dropout)))
    config = shaped.to_hf_config(**fields)
    got = arch_from_dict(config.to_dict(), source="the model config")
    assert got == shaped, (got, shaped)
    return config


def build_model(settings: TrainSettings, arch: Arch, tokenizer: Any, rt: Runtime, log: Log) -> tuple[Any, Arch]:
    """(the freshly initialised model, its architecture with the tokenizer's vocab_size): the same weights on every
    rank (from ``settings.seed``); afterwards each rank other than 0 draws its own dropout stream."""
    import torch
    from transformers import AutoModelForCausalLM

    vocab = len(tokenizer)
    config = build_model_config(settings.model_dir, arch, vocab, tokenizer.eos_token_id, settings.dropout)
    if vocab != arch.vocab_size:
        log(f"vocab_size {arch.vocab_size} -> {vocab} to match the tokenizer (all other architecture fields as in "
            f"{settings.model_dir / 'config.json'})")
    torch.manual_seed(settings.seed)
    model = AutoModelForCausalLM.from_config(config)  # GPT2LMHeadModel or the per-layer one
    if rt.rank:
        torch.manual_seed(settings.seed * 100_003 + rt.rank)  # rank 0 keeps the seed's stream
    shaped = with_fields(arch, vocab_size=vocab)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == shaped.total_params(), (n_params, shaped.total_params())
    log(f"model: {arch.archid} " + " ".join(f"{k}={v}" for k, v in arch.columns().items()) +
        f" vocab={vocab}: {shaped.non_embedding_params():,} non-embedding / {n_params:,} params")
    return model, shaped
