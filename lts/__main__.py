"""The `lts` command (or `python -m lts`): one command, six subcommands.

    lts search [flags]               search architectures (the same as `python search.py`)
    lts train models/<archid>        train one for real (`python train.py`)
    lts generate MODEL TOKENIZER P   generate text (`python generate_text.py`)
    lts compare MODEL...             compare models side by side (`python benchmark.py`)
    lts evaluate CONFIG_OR_DIR       score one architecture
    lts report RUN_DIR               the interactive report of a search run

search, train, generate and compare run the ``main`` of lts/<package>/cli.py with the arguments after the
subcommand, as the top-level scripts do; evaluate and report live here. Every one has ``-h`` and the same
error contract (:func:`lts.core.cli.run_cli`): bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import NamedTuple

from lts.core.cli import ArgumentParser, run_cli
from lts.core.errors import LTSError
from lts.core.fileio import nan_to_none

DEFAULT_CONTEXT = 512


class Command(NamedTuple):
    """A subcommand whose flags and main live in a subpackage: ``module`` has ``main(argv, prog)``."""

    module: str
    help: str


# In the order `lts -h` lists them, before evaluate and report.
COMMANDS = {
    "search": Command("lts.search.cli", "search GPT-2 architectures for a Pareto front (python search.py)"),
    "train": Command("lts.train.cli", "train a models/<archid> architecture for real (python train.py)"),
    "generate": Command("lts.generate.cli", "generate text with a hub or local model (generate_text.py)"),
    "compare": Command("lts.compare.cli", "compare models side by side (python benchmark.py)"),
}


def _evaluate(args: argparse.Namespace) -> int:
    from lts.core.arch import ArchConfig
    from lts.cost import probes
    from lts.cost.evaluator import EvalSettings, Evaluator
    from lts.cost.objectives import REGISTRY
    from lts.cost.store import default_cache_path
    from lts.cost.target import make_target

    config = ArchConfig.load(args.config)
    context = min(DEFAULT_CONTEXT, config.n_positions) if args.context is None else args.context
    # Every registered objective (--no-generation: those measured on the generation graph left out).
    wanted = [name for name, o in REGISTRY.items()
              if not (args.no_generation and o.probe is not None and probes.get(o.probe).graph == "kv")]
    settings = EvalSettings.create(latency_mode=args.latency_mode, seq_len=args.seq_len, context=context,
                                   objectives=wanted, timeout_s=args.timeout,
                                   target=make_target(args.target, args.threads, args.precision))
    if settings.seq_len > config.n_positions:
        raise LTSError(f"--seq-len {settings.seq_len} exceeds the model's n_positions ({config.n_positions})")
    if settings.measurement.context > config.n_positions:
        raise LTSError(f"--context {settings.measurement.context} exceeds the model's n_positions "
                       f"({config.n_positions})")
    cache = None if args.no_cache else (args.cache or default_cache_path())
    evaluator = Evaluator(settings, cache)
    result = evaluator.evaluate(config)
    if args.json:
        out = {"archid": result.archid, "config": config.to_dict(), **result.objectives(), "cached": result.cached,
               "conditions": evaluator.conditions()}
        print(json.dumps(nan_to_none(out), indent=2))
        return 0 if result.ok else 1
    c = evaluator.conditions()
    width = max(len(name) for name in [*REGISTRY, "eval_seconds"]) + 2
    print(f"{'archid':<{width}}{result.archid}")
    print(f"{'config':<{width}}" + " ".join(f"{k}={v}" for k, v in config.to_dict().items()))
    for name, objective in REGISTRY.items():
        shown = objective.display(result[name])
        unit = "" if objective.integer else (objective.display_unit or objective.unit)
        print(f"{name:<{width}}{shown or 'n/a'}{'  ' + unit if unit and shown else ''}")
    print(f"{'eval_seconds':<{width}}{result.eval_seconds:.2f}" + ("  (from cache)" if result.cached else ""))
    print(f"{'status':<{width}}{result.status}")
    context = f", context {c['context']}" if "context" in c else ""
    print(f"{'conditions':<{width}}batch 1, seq_len {c['seq_len']}{context}, latency {c['latency_mode']}, "
          f"{c['describe']}, "
          f"hardware {c['hardware']['id']}")
    return 0 if result.ok else 1


def run_command(name: str, argv: list[str], prog: str) -> int:
    """Run subcommand `name` of :data:`COMMANDS` with the arguments after it, as its script runs it: a bad flag
    and a bad setting both name the program ``PROG NAME`` in their one line (`prog` is the command's own name)."""
    module = importlib.import_module(COMMANDS[name].module)
    sub_prog = f"{prog} {name}"
    return run_cli(lambda args: module.main(args, prog=sub_prog), argv, prog=sub_prog)


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The top-level parser: every subcommand listed for ``-h``; evaluate's and report's flags parsed here."""
    from lts.cost.quantize import PRECISIONS
    from lts.cost.target import TARGETS

    parser = ArgumentParser(prog=prog, description="LTS: training-free search for GPT-2 architectures, and the "
                            "tools around it. `%(prog)s COMMAND -h` tells each command's flags.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for name, command in COMMANDS.items():  # listed only: their own parsers read their flags
        sub.add_parser(name, help=command.help, add_help=False)
    ev = sub.add_parser("evaluate", help="measure one architecture (a config.json or models/<archid>)")
    ev.add_argument("config", help="config.json, or a folder holding one")
    ev.add_argument("--seq-len", type=int, default=1024, help="tokens in the timed forward (default 1024)")
    ev.add_argument("--context", type=int, default=None,
                    help=f"KV-cache tokens of the timed decoding step; generation memory decodes to it "
                         f"(default {DEFAULT_CONTEXT}, or n_positions when smaller)")
    ev.add_argument("--no-generation", action="store_true",
                    help="skip the generation graph (decode latency, generation memory)")
    ev.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default min(4, cores))")
    ev.add_argument("--target", choices=sorted(TARGETS), default="cpu",
                    help="where the graph is measured (default cpu)")
    ev.add_argument("--precision", choices=PRECISIONS, default="fp32",
                    help="weights of the measured graphs (int8: ONNX Runtime's dynamic quantization)")
    ev.add_argument("--latency-mode", choices=["composed", "full"], default="composed")
    ev.add_argument("--timeout", type=float, default=300.0, help="seconds before the measurement is failed")
    ev.add_argument("--cache", help="SQLite cache (default evaluations.sqlite in $LTS_CACHE_DIR, else "
                                     "$XDG_CACHE_HOME/lts, else ~/.cache/lts)")
    ev.add_argument("--no-cache", action="store_true", help="measure afresh and store nothing")
    ev.add_argument("--json", action="store_true", help="print JSON")
    rep = sub.add_parser("report", help="write RUN_DIR/report.html, an interactive page of a search run")
    rep.add_argument("run_dir", help="a search's run folder (runs/<...>)")
    rep.add_argument("--models-dir", help="where the front's config.json files are (default: the run's models_dir)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m lts") -> int:
    """Run ``lts COMMAND ARGS`` (`argv` default: ``sys.argv[1:]``); `prog` names the program in usage and errors."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        return run_command(argv[0], argv[1:], prog)
    args = build_parser(prog).parse_args(argv)
    if args.command in COMMANDS:  # reached only through `--` before the command: no arguments follow it
        return run_command(args.command, [], prog)
    if args.command == "report":
        from lts.search.htmlreport import write_report

        print(f"report: {write_report(args.run_dir, args.models_dir)}")
        return 0
    return _evaluate(args)


def console() -> int:
    """Entry of the `lts` console command: the same one-line errors as `python -m lts`."""
    return run_cli(lambda argv: main(argv, prog="lts"), prog="lts")


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m lts"))
