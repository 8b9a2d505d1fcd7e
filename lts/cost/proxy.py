"""Training-free quality proxy: non-embedding parameter count, in closed form."""

from __future__ import annotations

from lts.core.arch import ArchConfig


def non_embedding_params(config: ArchConfig) -> int:
    """Parameters of GPT2LMHeadModel(config) except wte, wpe and the tied lm_head.

    Per block: ln_1 and ln_2 (2d each), c_attn (3d^2 + 3d), attn c_proj (d^2 + d),
    c_fc (d*n_inner + n_inner), mlp c_proj (n_inner*d + d); plus ln_f (2d).
    """
    d, f = config.n_embd, config.n_inner
    return config.n_layer * (4 * d * d + 2 * d * f + f + 9 * d) + 2 * d


def embedding_params(config: ArchConfig) -> int:
    """wte + wpe (the LM head is tied to wte, so it adds nothing)."""
    return (config.vocab_size + config.n_positions) * config.n_embd


def total_params(config: ArchConfig) -> int:
    return non_embedding_params(config) + embedding_params(config)
