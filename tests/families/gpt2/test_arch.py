import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from lts.core.errors import LTSError
from lts.families.gpt2 import ArchConfig, archid_of


def test_archid_pinned():
    # Pinned: changing the hashing scheme would rename every published model.
    assert ArchConfig(3, 192, 320, 4).archid == "gpt2_46bd34be748d"


def test_archid_stable_across_processes():
    code = "from lts.families.gpt2 import ArchConfig; print(ArchConfig(7, 512, 896, 8).archid)"
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
    hf = cfg.to_hf_config()
    assert (hf.n_layer, hf.n_embd, hf.n_inner, hf.n_head, hf.vocab_size, hf.n_positions) == (4, 256, 640, 8, 1000, 128)
    assert ArchConfig.from_hf_config(hf) == cfg


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
