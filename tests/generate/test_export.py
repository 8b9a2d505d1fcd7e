"""`lts export`: a folder that generates without LTS, with the code its README gives."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lts.core.cli import run_cli
from lts.generate.export import main

REPO = Path(__file__).resolve().parents[2]


def export(*argv) -> int:
    return run_cli(lambda args: main(args, prog="lts export"), [str(a) for a in argv], prog="lts export")


def readme_code(folder: Path, which: int = 0) -> str:
    """The README's `which`-th python block (0: numpy + onnxruntime + tokenizers, 1: onnxruntime-genai)."""
    return re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(encoding="utf-8"), re.S)[which]


# Runs the README's code (the file in argv[1]) as `python -c` would, then says on stderr's last line which LTS
# modules the process had imported by then: the README's imports, and whatever they imported in turn.
_README_RUNNER = """
import json, sys
code = open(sys.argv[1], encoding="utf-8").read()
exec(compile(code, "<README.md>", "exec"), {"__name__": "__main__"})
sys.stdout.flush()
print("lts modules: " + json.dumps(sorted(m for m in sys.modules if m == "lts" or m.startswith("lts."))),
      file=sys.stderr)
"""


def run_readme(folder: Path, which: int = 0) -> str:
    """The README's lines, run as they are (cwd: the folder); the process must not have imported LTS by their end
    (LTS is installed in this environment, so only not importing it shows the folder runs without it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = folder.parent / f"{folder.name}-readme-{which}.py"
    code.write_text(readme_code(folder, which), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _README_RUNNER, str(code)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "lts modules: []", f"the README's code imported LTS: {last}"
    return proc.stdout


def torch_greedy(model_dir: Path, prompt: str, steps: int) -> list[int]:
    from tokenizers import Tokenizer

    return torch_greedy_ids(model_dir, Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(prompt).ids, steps)


def torch_greedy_ids(model_dir: Path, prompt: list[int], steps: int) -> list[int]:
    """The torch model's greedy continuation of `prompt` (no stop at eos)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.tensor([prompt])
    new = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(ids).logits[:, -1].argmax(-1)
            new.append(int(nxt))
            ids = torch.cat([ids, nxt[:, None]], dim=1)
    return new


@pytest.fixture
def exported(tiny_tokenizer_dir, tmp_path) -> tuple[Path, Path]:
    """(a tiny GPT-2's folder, its export, fp32): weights wide enough that greedy decoding does not repeat one
    token (the default init's does)."""
    from lts.families.gpt2 import ArchConfig

    model_dir = save_model(tmp_path / "model", tiny_tokenizer_dir, ArchConfig(2, 64, 128, 2, vocab_size=512,
                                                                               n_positions=64), init=0.5)
    out = tmp_path / "shipped"
    assert export(model_dir, "--out", out, "--onnx-cache-dir", tmp_path / "cache") == 0
    return model_dir, out


def test_the_exported_folder_generates_transformers_greedy_tokens_with_plain_onnxruntime(exported):
    model_dir, out = exported
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "meta.json", "tokenizer.json", "generation_config.json", "README.md"} <= names
    from tokenizers import Tokenizer

    ids = torch_greedy(model_dir, "The future of AI", 20)
    assert len(set(ids)) > 3, ids  # not one token repeated: the comparison means something
    expected = Tokenizer.from_file(str(out / "tokenizer.json")).decode(ids)
    assert run_readme(out).rstrip("\n") == expected
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "LTS's own generation graph" in readme and "past_key_i" in readme
    # the graph's fused operators are ONNX Runtime's own: the README says so, naming them
    assert "MultiHeadAttention, SkipLayerNormalization" in readme and "not on other ONNX runtimes" in readme


def save_model(out: Path, tokenizer_dir: Path, arch, init: float = 0.02) -> Path:
    """A random GPT-2 of `arch` (weights drawn with std `init`) and the tokenizer, as a model folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = arch.to_hf_config(eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, initializer_range=init)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_onnxruntime_genai_generates_the_same_greedy_tokens(exported):
    import onnxruntime_genai as og

    model_dir, out = exported
    assert (out / "genai_config.json").is_file()
    prompt = [5, 17, 33, 4]
    model = og.Model(str(out))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + 12)
    generator = og.Generator(model, params)
    generator.append_tokens([prompt])
    while not generator.is_done():
        generator.generate_next_token()
    got = [int(t) for t in generator.get_sequence(0)][len(prompt):]
    expected = torch_greedy_ids(model_dir, prompt, 12)
    assert len(set(expected)) > 3, expected
    assert got == expected, (got, expected)  # every one of the 12 tokens, none missing
    assert run_readme(out, which=1).strip()  # the README's genai lines run as they are


def test_a_per_layer_model_gets_no_genai_config_and_the_readme_says_why(tiny_tokenizer_dir, tmp_path):
    from lts.families.gpt2 import ArchConfig

    model_dir = save_model(tmp_path / "mixed", tiny_tokenizer_dir, ArchConfig(2, 64, [128, 192], [2, 4], vocab_size=512,
                                                                               n_positions=64))
    out = tmp_path / "shipped"
    assert export(model_dir, "--out", out, "--onnx-cache-dir", tmp_path / "cache") == 0
    assert not (out / "genai_config.json").exists()
    assert "one head count and head size for every layer" in (out / "README.md").read_text(encoding="utf-8")
    assert run_readme(out).strip()


def test_int8_export_runs_the_same_lines(tiny_model_dir, tmp_path):
    out = tmp_path / "int8"
    assert export(tiny_model_dir, "--out", out, "--precision", "int8", "--onnx-cache-dir", tmp_path / "cache") == 0
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert ops & {"DynamicQuantizeMatMul", "MatMulInteger"}, ops
    assert run_readme(out).strip()  # generates (int8 tokens may differ from fp32's: not compared)


def test_a_non_empty_out_is_kept_unless_forced(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert export(tiny_model_dir, "--out", out, "--onnx-cache-dir", tmp_path / "cache") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--force" in err, err
    assert (out / "mine.txt").read_text() == "keep me"
    assert export(tiny_model_dir, "--out", out, "--force", "--onnx-cache-dir", tmp_path / "cache") == 0
    assert not (out / "mine.txt").exists() and (out / "model.onnx").is_file()


@pytest.mark.parametrize("argv, says", [
    (["--out", "{tmp}/o", "--precision", "int4"], "invalid choice: 'int4'"),
    (["--onnx-cache-dir", "{tmp}/c"], "no --out DIR given"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_model_dir, tmp_path, argv, says):
    argv = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "lts", "export", str(tiny_model_dir), *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr
