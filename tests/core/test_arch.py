import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from lts.core.arch import ArchConfig, archid_of
from lts.core.errors import LTSError
from lts.search.space import SearchSpace


def test_archid_pinned():
    # Pinned: changing the hashing scheme would rename every published model.
    assert ArchConfig(3, 192, 320, 4).archid == "gpt2_46bd34be748d"


def test_archid_stable_across_processes():
    code = "from lts.core.arch import ArchConfig; print(ArchConfig(7, 512, 896, 8).archid)"
    out = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
           for _ in range(2)}
    assert out == {ArchConfig(7, 512, 896, 8).archid}


def test_archid_ignores_non_architecture_keys_and_numpy_types():
    a = ArchConfig(np.int64(2), np.int32(128), 256, 2)
    b = ArchConfig.from_dict({"n_layer": 2, "n_embd": 128, "n_inner": 256, "n_head": 2, "model_type": "gpt2",
                              "resid_pdrop": 0.3, "vocab_size": 50257, "n_positions": 1024})
    assert a == b and archid_of(a) == archid_of(b)
    assert type(a.n_layer) is int
    json.dumps(a.to_dict())


def test_gpt2_config_roundtrip():
    cfg = ArchConfig(4, 256, 640, 8, vocab_size=1000, n_positions=128)
    hf = cfg.to_gpt2_config()
    assert (hf.n_layer, hf.n_embd, hf.n_inner, hf.n_head, hf.vocab_size, hf.n_positions) == (4, 256, 640, 8, 1000, 128)
    assert ArchConfig.from_gpt2_config(hf) == cfg


@pytest.mark.parametrize("bad", [
    {"n_embd": 128, "n_inner": 256, "n_head": 2},  # missing n_layer
    {"n_layer": 0, "n_embd": 128, "n_inner": 256, "n_head": 2},
    {"n_layer": -1, "n_embd": 128, "n_inner": 256, "n_head": 2},
    {"n_layer": 2, "n_embd": 100, "n_inner": 256, "n_head": 8},
    {"n_layer": 2.5, "n_embd": 128, "n_inner": 256, "n_head": 2},
    {"n_layer": 2, "n_embd": 128, "n_inner": 256, "n_head": 2, "model_type": "llama"},
])
def test_bad_configs_raise_user_error(bad):
    with pytest.raises(LTSError):
        ArchConfig.from_dict(bad)


def test_config_is_frozen():
    cfg = ArchConfig(2, 128, 256, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_layer = 3  # type: ignore[misc]


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
