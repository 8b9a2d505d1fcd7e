import numpy as np
import torch
from transformers import GPT2LMHeadModel

from lts.families.gpt2.space import SearchSpace


def _count(model: GPT2LMHeadModel) -> tuple[int, int]:
    """(non-embedding, total) parameters of a real model; tied lm_head is the same tensor as wte."""
    assert model.lm_head.weight is model.transformer.wte.weight
    total = sum(p.numel() for p in model.parameters())  # parameters() de-duplicates tied tensors
    emb = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    return total - emb, total


def test_closed_form_equals_real_model_for_50_random_configs():
    space = SearchSpace()
    rng = np.random.default_rng(123)
    configs = {space.sample(rng) for _ in range(52)}
    assert len(configs) >= 50
    for cfg in configs:
        with torch.device("meta"):  # real module structure, no memory
            model = GPT2LMHeadModel(cfg.to_hf_config())
        non_emb, total = _count(model)
        assert cfg.non_embedding_params() == non_emb, cfg
        assert cfg.total_params() == total, cfg
        assert cfg.embedding_params() == total - non_emb


def test_untied_head_would_be_counted_wrongly():
    # Archai's bug: with the head untied (weights never tied because init is skipped) the count
    # includes vocab*d extra parameters. Our proxy must not move with that.
    space = SearchSpace()
    cfg = space.sample(np.random.default_rng(0))
    with torch.device("meta"):
        model = GPT2LMHeadModel(cfg.to_hf_config(tie_word_embeddings=False))
    naive = sum(p.numel() for n, p in model.named_parameters() if "wte" not in n and "wpe" not in n)
    assert naive - cfg.non_embedding_params() == cfg.vocab_size * cfg.n_embd
