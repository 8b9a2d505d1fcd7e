"""The `lts` command (or `python -m lts`): one command, eight subcommands.

    lts search [flags]               search architectures (the same as `python search.py`)
    lts train models/<archid>        train one for real (`python train.py`)
    lts generate MODEL TOKENIZER P   generate text (`python generate_text.py`)
    lts compare MODEL...             compare models side by side (`python benchmark.py`)
    lts evaluate CONFIG_OR_DIR       score one architecture
    lts export MODEL --out DIR       a folder to ship a model without LTS
    lts cache [prune]                where the cache is, its size by kind; remove what no current key reaches
    lts report RUN_DIR               the interactive report of a search run

search, train, generate, compare, evaluate and export run the ``main`` of lts/<package>/cli.py with the arguments after
the subcommand (the first four as the top-level scripts do), cache the ``main`` of lts/cache.py; report lives here.
Every one has ``-h`` and the same error contract (:func:`lts.core.cli.run_cli`): bad input is one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple

from lts.core.cli import ArgumentParser, run_cli


class Command(NamedTuple):
    """A subcommand whose flags and main live in a subpackage: ``module`` has ``main(argv, prog)``."""

    module: str
    help: str


# In the order `lts -h` lists them, before report.
COMMANDS = {
    "search": Command("lts.search.cli", "search GPT-2 architectures for a Pareto front (python search.py)"),
    "train": Command("lts.train.cli", "train a models/<archid> architecture for real (python train.py)"),
    "generate": Command("lts.generate.cli", "generate text with a hub or local model (generate_text.py)"),
    "compare": Command("lts.compare.cli", "compare models side by side (python benchmark.py)"),
    "evaluate": Command("lts.cost.cli", "measure one architecture (a config.json or models/<archid>)"),
    "export": Command("lts.generate.export", "write a model folder that runs without LTS (ONNX Runtime)"),
}
# Commands with flags but no settings (nothing to preset, nothing on docs/settings.md): listed after COMMANDS.
TOOLS = {
    "cache": Command("lts.cache", "where the cache is, its size by kind; prune the unreachable"),
}
ALL_COMMANDS = {**COMMANDS, **TOOLS}


def run_command(name: str, argv: list[str], prog: str) -> int:
    """Run subcommand `name` of :data:`ALL_COMMANDS` with the arguments after it, as its script runs it: a bad flag
    and a bad setting both name the program ``PROG NAME`` in their one line (`prog` is the command's own name)."""
    module = importlib.import_module(ALL_COMMANDS[name].module)
    sub_prog = f"{prog} {name}"
    return run_cli(lambda args: module.main(args, prog=sub_prog), argv, prog=sub_prog)


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The top-level parser: every subcommand listed for ``-h``; report's flags parsed here."""
    parser = ArgumentParser(prog=prog, description="LTS: training-free search for GPT-2 architectures, and the "
                            "tools around it. `%(prog)s COMMAND -h` tells each command's flags.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for name, command in ALL_COMMANDS.items():  # listed only: their own parsers read their flags
        sub.add_parser(name, help=command.help, add_help=False)
    rep = sub.add_parser("report", help="write RUN_DIR/report.html, an interactive page of a search run")
    rep.add_argument("run_dir", help="a search's run folder (runs/<...>)")
    rep.add_argument("--models-dir", help="where the front's config.json files are (default: the run's models_dir)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m lts") -> int:
    """Run ``lts COMMAND ARGS`` (`argv` default: ``sys.argv[1:]``); `prog` names the program in usage and errors."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ALL_COMMANDS:
        return run_command(argv[0], argv[1:], prog)
    args = build_parser(prog).parse_args(argv)
    if args.command in ALL_COMMANDS:  # reached only through `--` before the command: no arguments follow it
        return run_command(args.command, [], prog)
    from lts.search.htmlreport import write_report  # report: the one command left

    print(f"report: {write_report(args.run_dir, args.models_dir)}")
    return 0


def console() -> int:
    """Entry of the `lts` console command: the same one-line errors as `python -m lts`."""
    return run_cli(lambda argv: main(argv, prog="lts"), prog="lts")


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m lts"))
