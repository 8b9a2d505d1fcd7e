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
