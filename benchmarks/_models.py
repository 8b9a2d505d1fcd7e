"""Random GPT-2s the benchmarks measure (speed does not depend on the weights), and the shapes their flags name.

torch and transformers are imported by the functions that build a model: the peers' command lines import this
module and need neither unless they build one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lts.families import load_arch
from lts.families.gpt2 import ArchConfig


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"2x256,4x384"`` -> [(n_layer, n_embd), ...]."""
    sizes = []
    for part in text.split(","):
        layers, embd = part.lower().split("x")
        sizes.append((int(layers), int(embd)))
    return sizes


def arch_from_spec(spec: str, **fields: Any) -> ArchConfig:
    """``"n_layer,n_embd,n_inner,n_head"`` (e.g. ``4,256,1024,4``) -> its ArchConfig; `fields` set the rest."""
    n_layer, n_embd, n_inner, n_head = (int(v) for v in spec.split(","))
    return ArchConfig(n_layer, n_embd, n_inner, n_head, **fields)


def build_model(n_layer: int, n_embd: int, vocab: int = 50257) -> tuple[Any, int]:
    """A random GPT-2 (seed 0): n_inner = 4 n_embd, 8 heads (4 where 8 do not divide n_embd), n_positions 1024,
    bos = eos = the last id; (model in eval mode, parameter count)."""
    import torch
    from transformers import GPT2LMHeadModel

    n_head = 8 if n_embd % 8 == 0 else 4
    cfg = ArchConfig(n_layer, n_embd, 4 * n_embd, n_head, vocab_size=vocab, n_positions=1024)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg.to_hf_config(bos_token_id=vocab - 1, eos_token_id=vocab - 1)).eval()
    return model, sum(p.numel() for p in model.parameters())


def model_from_folder(folder: Path) -> tuple[Any, int, str]:
    """A model of the architecture in `folder`'s config.json (a search's models/<archid>/, of any family LTS knows),
    weights drawn here (seed 0), bos = eos = the last id; (model, params, label: the folder's name and the
    architecture's columns)."""
    import torch

    arch = load_arch(folder)
    last = arch.vocab_size - 1
    torch.manual_seed(0)
    model = arch.to_model(bos_token_id=last, eos_token_id=last).eval()
    label = f"{Path(folder).name} " + " ".join(f"{k}={v}" for k, v in arch.columns().items())
    return model, sum(p.numel() for p in model.parameters()), label


def save_random_model(size: str, vocab: int, out_dir: Path) -> Path:
    """A random GPT-2 of `size` ("LAYERSxN_EMBD", :func:`build_model`) saved in `out_dir`; returns `out_dir`."""
    (n_layer, n_embd), = parse_sizes(size)
    model, _ = build_model(n_layer, n_embd, vocab)
    model.save_pretrained(out_dir)
    return out_dir
