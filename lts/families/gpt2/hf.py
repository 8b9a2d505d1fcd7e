"""Per-layer GPT-2 in transformers: a config and a model that ``AutoConfig`` / ``AutoModelForCausalLM`` load.

A per-layer architecture (``n_inner`` and ``n_head`` lists, one entry per layer: the LTS paper's space) is
saved with ``model_type: lts_gpt2`` and GPT-2's own field names; importing this module registers that type
with transformers (``lts`` does it as soon as transformers is imported: see ``lts/__init__.py``), so
``AutoModelForCausalLM.from_pretrained(folder)`` loads it from safetensors like any model, without
``trust_remote_code``. The model is ``GPT2LMHeadModel`` whose block *i* is built from a GPT2Config with
layer *i*'s ``n_inner`` and ``n_head``: same modules, same parameter names, same forward and KV cache.

A homogeneous architecture never uses this: it is saved as a plain ``GPT2Config`` that loads anywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from lts.families import HF_BOOKKEEPING
from lts.families.gpt2 import PER_LAYER, PER_LAYER_MODEL_TYPE

try:  # transformers 5's configs are strict dataclasses
    from huggingface_hub.dataclasses import strict
except ImportError:  # pragma: no cover - an older huggingface_hub (transformers 4)
    strict = None


class PerLayerGPT2Config(GPT2Config):
    """GPT2Config whose ``n_inner`` and ``n_head`` may be lists (one entry per layer)."""

    model_type = PER_LAYER_MODEL_TYPE
    n_head: int | list[int] = 12
    n_inner: int | list[int] | None = None

    def layer_config(self, i: int) -> GPT2Config:
        """A plain GPT2Config for layer `i`: this config with that layer's ``n_inner`` and ``n_head``."""
        values = {k: v for k, v in self.to_dict().items() if k not in HF_BOOKKEEPING}
        for name in PER_LAYER:
            value = values.get(name)
            values[name] = value[i] if isinstance(value, (list, tuple)) else value
        return GPT2Config(**values)


if dataclasses.is_dataclass(GPT2Config):  # transformers 5: configs are strict dataclasses, checked field by field
    PerLayerGPT2Config = strict(PerLayerGPT2Config)  # type: ignore[misc]


class PerLayerGPT2LMHeadModel(GPT2LMHeadModel):
    """GPT2LMHeadModel with a block of its own shape in each layer."""

    config_class = PerLayerGPT2Config

    def __init__(self, config: PerLayerGPT2Config) -> None:
        n_layer = config.n_layer
        config.n_layer = 0  # GPT2Model builds the parts every layer shares; the blocks are built below
        try:
            super().__init__(config)
        finally:
            config.n_layer = n_layer
        self.transformer.h = _blocks(config)
        self.post_init()


def _blocks(config: PerLayerGPT2Config) -> Any:
    """Block i built from layer i's shape; its attention then reads the model's own config at run time (only
    for the attention implementation, which transformers sets and may change after the model is built)."""
    import torch

    blocks = torch.nn.ModuleList([GPT2Block(config.layer_config(i), layer_idx=i) for i in range(config.n_layer)])
    for block in blocks:
        block.attn.config = config
    return blocks


def register() -> None:
    """Make ``model_type: lts_gpt2`` known to AutoConfig and AutoModelForCausalLM (once)."""
    try:
        AutoConfig.register(PER_LAYER_MODEL_TYPE, PerLayerGPT2Config)
    except ValueError:  # already registered
        pass
    try:
        AutoModelForCausalLM.register(PerLayerGPT2Config, PerLayerGPT2LMHeadModel)
    except ValueError:
        pass


register()

__all__ = ["PerLayerGPT2Config", "PerLayerGPT2LMHeadModel", "register"]
