"""One command: `lts search | train | generate | compare | evaluate | export | cache | report`, and the scripts as thin
shims over it.

Every subcommand has ``-h`` and the scripts' error contract (one line on stderr, exit status 2, no traceback,
nothing written); ``python -m lts search`` and ``python search.py`` are the same run.
"""

from __future__ import annotations

import csv
import importlib
import os
import re
from pathlib import Path

import pytest
from clirun import load_script, run_cli

from lts.__main__ import ALL_COMMANDS, COMMANDS

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["search", "train", "generate", "compare", "evaluate", "export", "cache", "report"]
SCRIPTS = {"search": "search.py", "train": "train.py", "generate": "generate_text.py", "compare": "benchmark.py"}

# Bad input for each subcommand, refused before anything runs: (arguments, program named, what the line says).
# search, train, generate, compare and evaluate name themselves `lts NAME`; report names the command (the
# subcommand only in argparse's errors about its own arguments).
BAD = {
    "search-generations": (["search", "--generations", "0"], "search",
                           "generations (--generations) must be an integer >= 1"),
    "search-flag": (["search", "--no-such-flag"], "search", "unrecognized arguments: --no-such-flag"),
    "train-batch": (["train", "model", "--batch-size", "zero"], "train", "invalid int value: 'zero'"),
    "train-flag": (["train", "model", "--no-such-flag"], "train", "unrecognized arguments: --no-such-flag"),
    "generate-backend": (["generate", "m", "t", "p", "--backend", "tpu"], "generate", "invalid choice: 'tpu'"),
    "generate-flag": (["generate", "m", "t", "p", "--no-such-flag"], "generate",
                      "unrecognized arguments: --no-such-flag"),
    "compare-repeats": (["compare", "m", "--repeats", "0", "--out", "bench"], "compare",
                        "repeats (--repeats) must be an integer >= 1"),
    "compare-flag": (["compare", "m", "--no-such-flag"], "compare", "unrecognized arguments: --no-such-flag"),
    "evaluate-missing": (["evaluate", "nope.json"], "evaluate", "no config.json at nope.json"),
    "evaluate-flag": (["evaluate", "nope.json", "--no-such-flag"], "evaluate",
                      "unrecognized arguments: --no-such-flag"),
    "cache-flag": (["cache", "prune", "--no-such-flag"], "cache", "unrecognized arguments: --no-such-flag"),
    "report-missing": (["report", "nope"], "", "run folder not found: nope"),
    "report-flag": (["report", "nope", "--no-such-flag"], "", "unrecognized arguments: --no-such-flag"),
}


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_lts_help_lists_the_eight_commands_one_line_each(tmp_path):
    proc = run_cli(["-m", "lts", "-h"], cwd=tmp_path, env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    listed = [m.group(1) for m in re.finditer(r"^ {4}(\w+) +\S", proc.stdout, re.M)]
    assert listed == SUBCOMMANDS, proc.stdout
    for name, command in ALL_COMMANDS.items():  # the whole help on the command's own line, not wrapped
        assert re.search(rf"^ {{4}}{name} +{re.escape(command.help)}$", proc.stdout, re.M), proc.stdout


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help(tmp_path, sub):
    proc = run_cli(["-m", "lts", sub, "-h"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m lts {sub} ") and proc.stderr == "", proc.stdout
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_to_a_subcommand_is_one_line_and_exit_2(tmp_path, case):
    args, named, expect = BAD[case]
    (tmp_path / "model").mkdir()
    before = _snapshot(tmp_path)
    proc = run_cli(["-m", "lts", *args], cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = _one_line(proc)
    assert line.startswith(f"{' '.join(['python -m lts', named]).strip()}: error: ") and expect in line, line
    assert proc.stdout == ""
    assert _snapshot(tmp_path) == before, "nothing written on bad input"


@pytest.mark.parametrize("args", [[], ["nope"], ["--no-such-flag"]], ids=["none", "unknown", "flag"])
def test_no_or_an_unknown_subcommand_is_one_line_and_exit_2(tmp_path, args):
    proc = run_cli(["-m", "lts", *args], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert _one_line(proc).startswith("python -m lts: error: ")
    assert not any(tmp_path.iterdir())


def test_the_console_command_names_itself_lts(tmp_path):
    """The `lts` console script (setup.cfg: lts = lts.__main__:console), as its generated wrapper calls it."""
    script = tmp_path / "lts_console.py"
    script.write_text("import sys\nfrom lts.__main__ import console\nsys.exit(console())\n")
    proc = run_cli([script, "search", "-h"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: lts search "), proc.stderr
    proc = run_cli([script, "train", "model", "--batch-size", "0"], cwd=tmp_path)
    assert proc.returncode == 2
    line = _one_line(proc)
    assert line.startswith("lts train: error: ") and "batch-size" in line, line
    proc = run_cli([script], cwd=tmp_path)
    assert proc.returncode == 2 and _one_line(proc).startswith("lts: error: ")


@pytest.mark.parametrize("sub", list(SCRIPTS))
def test_the_scripts_are_shims_over_the_package(sub):
    """Each top-level script re-exports its subcommand's main and parse_args, and holds nothing else of note."""
    path = REPO / SCRIPTS[sub]
    script = load_script(path)
    cli = importlib.import_module(COMMANDS[sub].module)
    assert script.main is cli.main and script.parse_args is cli.parse_args
    code = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(code) <= 12, f"{path.name} is a shim: {len(code)} lines"


@pytest.mark.parametrize("sub", list(SCRIPTS))
def test_script_help_is_the_subcommand_help(tmp_path, sub):
    script = run_cli([REPO / SCRIPTS[sub], "-h"], cwd=tmp_path, env={**os.environ, "COLUMNS": "100"})
    command = run_cli(["-m", "lts", sub, "-h"], cwd=tmp_path, env={**os.environ, "COLUMNS": "100"})
    assert script.returncode == command.returncode == 0, (script.stderr, command.stderr)

    def body(text: str) -> str:  # all but the usage block, whose width follows the program's name
        return text.split("\n\n", 1)[1]

    assert body(script.stdout) == body(command.stdout)


TINY_SEARCH = ["--objectives", "non_embedding_params,onnx_file_mb", "--generations", "1", "--population", "2",
               "--no-progress", "--run-dir", "R", "--out", "models", "--assets-dir", "assets", "--cache", "c.sqlite"]


@pytest.mark.heavy
def test_lts_search_and_search_py_are_the_same_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    by_command = run_cli(["-m", "lts", "search", *TINY_SEARCH], cwd=a)
    by_script = run_cli([REPO / "search.py", *TINY_SEARCH], cwd=b)
    assert by_command.returncode == by_script.returncode == 0, (by_command.stderr, by_script.stderr)

    def archids(folder: Path, name: str) -> list[str]:
        with open(folder / "R" / name, newline="") as f:
            return [row["archid"] for row in csv.DictReader(f)]

    assert archids(a, "evaluations.csv") == archids(b, "evaluations.csv") and archids(a, "evaluations.csv")
    assert archids(a, "pareto.csv") == archids(b, "pareto.csv")
    assert sorted(p.name for p in (a / "models").iterdir()) == sorted(p.name for p in (b / "models").iterdir())

    def printed(text: str) -> str:  # the same lines, but for the wall time
        return re.sub(r" in \d+(\.\d+)? s;", " in T s;", text)

    assert printed(by_command.stdout) == printed(by_script.stdout)

