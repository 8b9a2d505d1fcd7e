import numpy as np
import pytest

from lts.core.errors import LTSError
from lts.families.gpt2.space import SearchSpace


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


PER_LAYER = SearchSpace(n_layer=[1, 2, 3], n_embd=[96, 100, 128], n_inner=[64, 128, 256], n_head=[3, 8, 16],
                        per_layer=True, vocab_size=64, n_positions=32)


def test_per_layer_space_names_its_genes_as_pymoo_variables():
    from pymoo.core.variable import Integer

    assert PER_LAYER.genes == ("n_layer", "n_embd", "n_inner_0", "n_inner_1", "n_inner_2", "n_head_0", "n_head_1",
                               "n_head_2")
    variables = PER_LAYER.variables()
    assert list(variables) == list(PER_LAYER.genes) and all(isinstance(v, Integer) for v in variables.values())
    assert variables["n_layer"].bounds == (0, 2) and variables["n_inner_1"].bounds == (0, 2)
    assert SearchSpace().genes == ("n_layer", "n_embd", "n_inner", "n_head")
    assert PER_LAYER.size == 3 * sum(9 ** n for n in (1, 2, 3))
    assert SearchSpace().size == 5880


def test_per_layer_decode_repairs_every_layer_and_round_trips():
    rng = np.random.default_rng(0)
    seen_per_layer = 0
    for _ in range(500):
        genes = {g: rng.uniform(-2, 5) for g in PER_LAYER.genes}
        cfg = PER_LAYER.decode(genes)
        heads, inner = cfg.layer_values("n_head"), cfg.layer_values("n_inner")
        assert len(heads) == len(inner) == cfg.n_layer
        assert all(cfg.n_embd % h == 0 and h in PER_LAYER.n_head for h in heads)
        assert all(f in PER_LAYER.n_inner for f in inner)
        assert PER_LAYER.decode(PER_LAYER.encode(cfg)) == cfg
        seen_per_layer += cfg.per_layer
    assert seen_per_layer > 100  # layers do differ


def test_the_lts_paper_preset_is_the_papers_space():
    from pathlib import Path

    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[3] / "configs" / "search-lts-paper.yaml").read_text())
    s = SearchSpace.from_dict(data["space"])
    assert s.per_layer and s.n_layer == tuple(range(2, 17)) and s.n_embd == tuple(range(128, 1025, 64))
    assert s.n_inner[0] == 256 and s.n_inner[-1] == 4096 and s.n_head == (2, 4, 8) and s.vocab_size == 50257
    assert s.size > 10 ** 20
