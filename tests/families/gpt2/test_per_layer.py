"""The per-layer GPT-2 (n_inner and n_head per layer, the LTS paper's space): the type, its ids, its model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lts.core.errors import LTSError
from lts.families import load_arch
from lts.families.gpt2 import ArchConfig, Block

REPO = Path(__file__).resolve().parents[3]


def test_homogeneous_architectures_keep_their_ids():
    """Every archid ever written stays: pinned on members of the committed front, and on every folder of models/."""
    assert ArchConfig(10, 128, 704, 2).archid == "gpt2_0238de5778d2"
    assert ArchConfig(10, 128, [704] * 10, [2] * 10).archid == "gpt2_0238de5778d2"  # equal lists are the integer
    folders = [p for p in (REPO / "models").iterdir() if (p / "config.json").is_file()]
    assert folders, "models/ holds no front"
    for folder in folders:
        config = load_arch(folder)
        assert config.archid == folder.name and not config.per_layer


def test_per_layer_fields_blocks_and_description():
    c = ArchConfig(4, 128, [256, 512, 512, 256], [2, 4, 4, 8], vocab_size=1000, n_positions=64)
    assert c.per_layer and c.n_inner == (256, 512, 512, 256) and c.n_head == (2, 4, 4, 8)
    assert c.blocks() == (Block(128, 256, 2), Block(128, 512, 4), Block(128, 512, 4), Block(128, 256, 8))
    assert c.block_parts() == {"block:256x2": (Block(128, 256, 2), 1), "block:512x4": (Block(128, 512, 4), 2),
                               "block:256x8": (Block(128, 256, 8), 1)}
    assert c.describe("n_inner") == "256,512x2,256" and c.describe("n_head") == "2,4x2,8"
    assert c.to_dict()["n_inner"] == [256, 512, 512, 256]
    assert ArchConfig.from_dict(c.to_dict()) == c and ArchConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.archid.startswith("gpt2_") and c.archid != ArchConfig(4, 128, 384, 4).archid
    homogeneous = ArchConfig(3, 64, 96, 4)
    assert homogeneous.block_parts() == {"block": (Block(64, 96, 4), 3)}


@pytest.mark.parametrize("fields, message", [
    ({"n_inner": [256, 512]}, "n_inner has 2 entries, one per layer is 3 (n_layer)"),
    ({"n_head": [2, 3, 2]}, "n_embd=128 is not divisible by n_head[1]=3"),
    ({"n_head": [2, 4, 0]}, "n_head[2] must be positive, got 0"),
    ({"n_inner": [256, "wide", 256]}, "n_inner[1] must be an integer, got 'wide'"),
    ({"n_embd": [128, 128, 128]}, "n_embd must be one integer for every layer"),
    ({"n_layer": [3]}, "n_layer must be one integer for every layer"),
])
def test_what_the_family_cannot_express_is_refused(fields, message):
    with pytest.raises(LTSError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        ArchConfig(**{"n_layer": 3, "n_embd": 128, "n_inner": 256, "n_head": 2, **fields})


@pytest.mark.parametrize("seed", range(4))
def test_parameter_count_is_exact(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    d = int(rng.choice([64, 128, 192]))
    c = ArchConfig(n, d, [int(v) for v in rng.choice([32, 96, 256, 448], n)],
                   [int(v) for v in rng.choice([1, 2, 4, 8], n)], vocab_size=int(rng.integers(50, 500)),
                   n_positions=32)
    import torch

    with torch.device("meta"):
        model = c.to_model()
    params = dict(model.named_parameters())
    embeddings = {"transformer.wte.weight", "transformer.wpe.weight"}
    assert sum(p.numel() for k, p in params.items() if k not in embeddings) == c.non_embedding_params()
    assert sum(p.numel() for p in params.values()) == c.total_params()


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=240)


@pytest.mark.parametrize("order", ["lts first", "transformers first"])
def test_a_saved_per_layer_model_loads_with_auto_classes_once_lts_is_imported(tmp_path, order):
    """Saved as model_type lts_gpt2 with GPT-2's field names and safetensors; AutoModelForCausalLM loads it in a
    process that imported lts (before or after transformers); without lts, transformers names the type."""
    c = ArchConfig(3, 64, [96, 160, 64], [4, 2, 8], vocab_size=120, n_positions=32)
    model = c.to_model().eval()
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model_type"] == "lts_gpt2" and saved["n_head"] == [4, 2, 8] and saved["n_inner"] == [96, 160, 64]
    assert (tmp_path / "m" / "model.safetensors").is_file()
    imports = "import lts, transformers" if order == "lts first" else "import transformers, lts"
    code = (f"{imports}, torch\n"
            "from transformers import AutoConfig, AutoModelForCausalLM\n"
            "m = AutoModelForCausalLM.from_pretrained('m').eval()\n"
            "ids = torch.arange(10)[None]\n"
            "import json; print(json.dumps([type(m).__name__, AutoConfig.from_pretrained('m').n_head, "
            "m(ids).logits[0, -1, :3].tolist()]))")
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    import torch

    with torch.no_grad():
        want = model(torch.arange(10)[None]).logits[0, -1, :3].tolist()
    name, heads, logits = json.loads(out.stdout.strip().splitlines()[-1])
    assert name == "PerLayerGPT2LMHeadModel" and heads == [4, 2, 8]
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
    without = _run("from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained('m')",
                   tmp_path)
    assert without.returncode != 0 and "model type `lts_gpt2`" in without.stderr  # transformers' own words


def test_a_homogeneous_model_is_a_plain_gpt2():
    c = ArchConfig(2, 64, [96, 96], [4, 4], vocab_size=120, n_positions=32)
    config = c.to_hf_config()
    assert type(config).__name__ == "GPT2Config" and config.model_type == "gpt2" and config.n_head == 4


BAD_FILES = {  # a user's config.json that the family cannot express: refused (the space repairs only its own)
    "length": ({"n_inner": [256, 512]}, "n_inner has 2 entries, one per layer is 3 (n_layer)"),
    "divides": ({"n_head": [2, 3, 2]}, "n_embd=128 is not divisible by n_head[1]=3"),
    "mix": ({"n_embd": [128, 128, 128], "n_head": [2, 4, 8]}, "n_embd must be one integer for every layer"),
}
COMMANDS = {
    "evaluate": lambda folder: ["-m", "lts", "evaluate", folder],
    "train": lambda folder: [REPO / "train.py", folder, "--out", "out", "--corpus", "pydoc"],
    "generate": lambda folder: [REPO / "generate_text.py", folder, folder.parent / "tok", "hello", "--backend",
                                "onnx"],
    "compare": lambda folder: [REPO / "benchmark.py", folder, "--out", "bench", "--no-progress"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("bad", list(BAD_FILES))
def test_a_config_the_family_cannot_express_is_one_line_and_exit_2(tmp_path, command, bad):
    from clirun import run_cli

    fields, message = BAD_FILES[bad]
    folder = tmp_path / "model"
    folder.mkdir()
    config = {"model_type": "gpt2", "n_layer": 3, "n_embd": 128, "n_inner": [256, 256, 512], "n_head": [2, 4, 8],
              "vocab_size": 100, "n_positions": 64, **fields}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")  # an empty but valid file
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", eos_token="[UNK]").save_pretrained(
        tmp_path / "tok")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = run_cli(COMMANDS[command](folder), cwd=tmp_path, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
                   timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert message in lines[0] and "Traceback" not in proc.stderr, lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "nothing written"
