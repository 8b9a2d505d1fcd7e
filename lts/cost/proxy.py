"""Training-free quality proxy: non-embedding parameter count, in closed form."""

from __future__ import annotations

from lts.core.arch import ArchConfig


def non_embedding_params(config: ArchConfig) -> int:
    """Parameters of GPT2LMHeadModel(config) except wte, wpe and the tied lm_head.

    Per block: ln_1 and ln_2 (2d each), c_attn (3d^2 + 3d), attn c_proj (d^2 + d),
    c_fc (d*n_inner + n_inner), mlp c_proj (n_inner*d + d); plus ln_f (2d).
    """
    return sum(block_params(b.n_embd, b.n_inner) for b in config.blocks()) + 2 * config.n_embd


def block_params(d: int, f: int) -> int:
    """One block's parameters (the head count moves none: it splits c_attn's output)."""
    return 4 * d * d + 2 * d * f + f + 9 * d


def embedding_params(config: ArchConfig) -> int:
    """wte + wpe (the LM head is tied to wte, so it adds nothing)."""
    return (config.vocab_size + config.n_positions) * config.n_embd


def total_params(config: ArchConfig) -> int:
    return non_embedding_params(config) + embedding_params(config)
