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


def readme_code(folder: Path) -> str:
    (code,) = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(encoding="utf-8"), re.S)
    return code


def run_readme(folder: Path) -> str:
    """The README's lines, run as they are in a process that never imports LTS (cwd: the folder)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", "import sys; assert 'lts' not in sys.modules\n" + readme_code(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def torch_greedy(model_dir: Path, prompt: str, steps: int) -> list[int]:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.tensor([Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(prompt).ids])
    new = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(ids).logits[:, -1].argmax(-1)
            new.append(int(nxt))
            ids = torch.cat([ids, nxt[:, None]], dim=1)
    return new


def test_the_exported_folder_generates_transformers_greedy_tokens_with_plain_onnxruntime(tiny_model_dir, tmp_path):
    out = tmp_path / "shipped"
    assert export(tiny_model_dir, "--out", out, "--onnx-cache-dir", tmp_path / "cache") == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "meta.json", "tokenizer.json", "generation_config.json", "README.md"} <= names
    from tokenizers import Tokenizer

    expected = Tokenizer.from_file(str(out / "tokenizer.json")).decode(torch_greedy(tiny_model_dir,
                                                                                    "The future of AI", 20))
    assert run_readme(out).rstrip("\n") == expected
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "LTS's own generation graph" in readme and "past_key_i" in readme


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
