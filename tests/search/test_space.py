import numpy as np
import pytest

from lts.core.errors import LTSError
from lts.search.space import SearchSpace


def test_default_space_is_archais():
    s = SearchSpace()
    assert s.n_layer == tuple(range(1, 11))
    assert s.n_embd == tuple(range(128, 1024, 64)) == s.n_inner
    assert s.n_head == (2, 4, 8)
    assert (s.vocab_size, s.n_positions) == (50257, 1024)


def test_decode_repairs_any_genes_into_valid_configs():
    # A space where most (n_embd, n_head) pairs are invalid: decode must repair, never crash.
    s = SearchSpace(n_layer=[1, 2], n_embd=[96, 100, 120, 128], n_inner=[64], n_head=[3, 8, 16])
    rng = np.random.default_rng(0)
    for _ in range(500):
        x = rng.uniform(-2, 6, size=4)
        cfg = s.decode(x)
        assert cfg.n_embd % cfg.n_head == 0
        assert cfg.n_embd in s.n_embd and cfg.n_head in s.n_head
        assert s.decode(s.encode(cfg)) == cfg


def test_impossible_space_is_a_user_error():
    with pytest.raises(LTSError):
        SearchSpace(n_embd=[5, 7], n_head=[2, 4])
