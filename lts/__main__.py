"""`python -m lts evaluate CONFIG_OR_DIR [--seq-len N] [--json]` (or the `lts` command): score one architecture.
`python -m lts report RUN_DIR`: the interactive report of a search run."""

from __future__ import annotations

import argparse
import json
import sys

from lts.core.cli import ArgumentParser, run_cli
from lts.core.errors import LTSError
from lts.core.fileio import nan_to_none

DEFAULT_CONTEXT = 512


def _evaluate(args: argparse.Namespace) -> int:
    from lts.core.arch import ArchConfig
    from lts.cost.evaluator import EvalSettings, Evaluator
    from lts.cost.objectives import REGISTRY
    from lts.cost.store import default_cache_path
    from lts.cost.target import make_target

    config = ArchConfig.load(args.config)
    context = min(DEFAULT_CONTEXT, config.n_positions) if args.context is None else args.context
    settings = EvalSettings.create(latency_mode=args.latency_mode, seq_len=args.seq_len, context=context,
                                   generation=not args.no_generation, timeout_s=args.timeout,
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


def main(argv: list[str] | None = None) -> int:
    from lts.cost.quantize import PRECISIONS
    from lts.cost.target import TARGETS

    parser = ArgumentParser(prog="python -m lts", description="LTS command-line tools")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="measure one architecture (a config.json or a models/<archid> folder)")
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
    ev.add_argument("--cache", help="SQLite cache (default ~/.cache/lts/evaluations.sqlite or $LTS_CACHE_DIR)")
    ev.add_argument("--no-cache", action="store_true", help="measure afresh and store nothing")
    ev.add_argument("--json", action="store_true", help="print JSON")
    rep = sub.add_parser("report", help="write RUN_DIR/report.html, an interactive page of a search run")
    rep.add_argument("run_dir", help="a search's run folder (runs/<...>)")
    rep.add_argument("--models-dir", help="where the front's config.json files are (default: the run's models_dir)")
    args = parser.parse_args(argv)
    if args.command == "report":
        from lts.search.htmlreport import write_report

        print(f"report: {write_report(args.run_dir, args.models_dir)}")
        return 0
    return _evaluate(args)


def console() -> int:
    """Entry of the `lts` console command: the same one-line errors as `python -m lts`."""
    return run_cli(main, prog="lts")


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m lts"))
