"""The Family contract suite (lts.testing.family) on GPT-2: Archai's kind of space and the LTS paper's, small."""

from __future__ import annotations

import pytest

from lts.families.gpt2 import FAMILY
from lts.families.gpt2.space import SearchSpace
from lts.testing.family import FamilyContract

SPACES = {
    "homogeneous": SearchSpace(n_layer=(1, 2), n_embd=(32, 48), n_inner=(64, 96), n_head=(2, 4), vocab_size=96,
                               n_positions=32),
    "per-layer": SearchSpace(n_layer=(1, 2), n_embd=(32,), n_inner=(64, 96), n_head=(2, 4), per_layer=True,
                             vocab_size=96, n_positions=32),
}


class TestGPT2(FamilyContract):
    @pytest.fixture
    def family(self):
        return FAMILY

    @pytest.fixture(params=list(SPACES))
    def space(self, request):
        return SPACES[request.param]


class TestLlama(FamilyContract):
    """Llama: a space where every gene combination is an architecture of its own (KV heads 1 and 2 divide both head
    counts), tied and untied."""

    @pytest.fixture
    def family(self):
        from lts.families.llama import FAMILY as LLAMA

        return LLAMA

    @pytest.fixture
    def space(self):
        from lts.families.llama.space import LlamaSpace

        return LlamaSpace(num_hidden_layers=(1, 2), hidden_size=(32, 64), ffn_ratio=(2.0, 3.0),
                          num_key_value_heads=(1, 2), tie_word_embeddings=(True, False), head_dim=16, vocab_size=96,
                          max_position_embeddings=64)
