"""The inputs a measured graph runs on: deterministic token ids, hidden states, KV caches, a generation.

Every figure must be a function of the graph and the settings alone, so every input is drawn from a
fixed seed. Used in the measuring child (``lts.cost.measure``) and by the benchmarks that time graphs
the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lts.core.onnxgraph import kv_names
from lts.families import Arch

PROMPT_TOKENS = 16  # the prefill of the generation-memory probe (a short prompt, like a chat turn)
DECODE_STEPS = 3    # decoding steps that end the probe at --context tokens, each feeding back the last presents


def token_feeds(seq_len: int, vocab_size: int) -> dict[str, np.ndarray]:
    """Deterministic token ids spread over the vocabulary, batch 1."""
    ids = np.random.default_rng(0).integers(0, vocab_size, size=(1, seq_len), dtype=np.int64)
    return {"input_ids": ids}


def feeds_for(sess: Any, seq_len: int) -> dict[str, np.ndarray]:
    """Inputs for a session of any part: token ids, or unit-scale hidden states + causal mask."""
    inp = sess.get_inputs()[0]
    if inp.type == "tensor(int64)":
        return token_feeds(seq_len, sess.get_outputs()[0].shape[-1])
    return block_feeds(inp.shape[-1], seq_len)


def block_feeds(n_embd: int, seq_len: int) -> dict[str, np.ndarray]:
    """A block part's inputs: unit-scale hidden states (batch 1) and an additive causal mask."""
    rng = np.random.default_rng(0)
    mask = np.where(np.tril(np.ones((seq_len, seq_len), bool)), 0.0, np.finfo(np.float32).min).astype(np.float32)
    return {"hidden": rng.standard_normal((1, seq_len, n_embd), dtype=np.float32), "mask": mask[None, None]}


def prefill_feeds(config: Arch, tokens: int) -> dict[str, np.ndarray]:
    """A prompt of `tokens` tokens and an empty KV cache: the first call of a generation."""
    return {**decode_feeds(config, 0), "input_ids": token_feeds(tokens, config.vocab_size)["input_ids"],
            "attention_mask": np.ones((1, tokens), np.int64)}


def decode_feeds(config: Arch, past_len: int, batch: int = 1) -> dict[str, np.ndarray]:
    """One new token and a KV cache of `past_len` positions (filled: untouched pages would not count as memory)."""
    rng = np.random.default_rng(0)
    feeds = {"input_ids": np.full((batch, 1), 1, np.int64), "attention_mask": np.ones((batch, past_len + 1), np.int64)}
    layout = config.kv_layout()
    for name, (h, hd) in zip(kv_names(len(layout))[0], (pair for pair in layout for _ in ("key", "value"))):
        feeds[name] = rng.standard_normal((batch, h, past_len, hd), dtype=np.float32)
    return feeds


def generate_to_context(sess: Any, config: Arch, context: int) -> Any:
    """What a generation to `context` tokens holds at its end: prefill a prompt, then decode to `context`.

    The cache of the steps in between is filled in directly (their compute does not change the
    peak, which is weights + the largest cache, held twice during the last step: the past being
    read and the present being written, as ``generate_text.py`` holds them).
    """
    prompt = min(PROMPT_TOKENS, context)
    sess.run(None, prefill_feeds(config, prompt))
    steps = min(DECODE_STEPS, context - prompt)
    if steps:
        past_names = kv_names(len(config.kv_layout()))[0]
        feeds = decode_feeds(config, context - steps)
        for _ in range(steps):
            _, *presents = sess.run(None, feeds)
            mask = np.ones((1, feeds["attention_mask"].shape[1] + 1), np.int64)
            feeds = {"input_ids": feeds["input_ids"], "attention_mask": mask, **dict(zip(past_names, presents))}
    return sess
