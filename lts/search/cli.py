"""``lts search`` (and ``python search.py``): the flags of a search, and its main.

The script at the top of the repository and the ``lts`` command both call :func:`main`; the help text
below is what ``-h`` prints.
"""

from __future__ import annotations

import argparse

from lts.core.cli import ArgumentParser
from lts.core.settings import given_flags
from lts.search.job import SearchJob, run_job

SETTINGS = SearchJob  # every setting, declared once (lts.core.settings)
DESCRIPTION = "Search GPT-2 architectures for the Pareto front of quality proxy vs ONNX latency and memory."
EPILOG = """\
A flag overrides the preset (--config FILE), which overrides the defaults listed below.
Examples (`lts search` runs the same):
  python search.py                                   # the default search (Archai's space)
  python search.py --generations 2 --population 6 --seq-len 32 --run-dir runs/tiny
  python search.py --resume                          # continue the latest killed run
"""


def parse_args(argv: list[str] | None, prog: str | None = None) -> tuple[ArgumentParser, argparse.Namespace]:
    """The parser and the parsed flags; `prog` names the program in usage and errors (default: the script's name).
    Every setting's flag comes from its declaration in :class:`lts.search.job.SearchJob`."""
    p = ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter, settings=SearchJob, preset="search")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir, or the latest in runs/")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p, p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run a search as the flags in `argv` (default: ``sys.argv[1:]``) say; prints where its files went."""
    parser, args = parse_args(argv, prog)
    job = parser.settings_from(args)
    given = set(given_flags(SearchJob, args))
    out = run_job(job, resume=args.resume, given=given, progress=not args.no_progress)

    print(f"\nevaluated {out.n_evaluated} architectures ({out.n_cached} from cache, {out.n_failed} failed) "
          f"in {out.seconds:.1f} s; Pareto front: {len(out.front_ids)} models ({out.n_robust} robust to noise), "
          f"hypervolume {out.hypervolume:.4f}")
    print(f"  strategy    : {out.strategy}")
    if out.n_whole:
        print(f"  whole       : the front's {out.n_whole} members measured whole (the search composed or predicted "
              f"their costs; both figures are in models/<archid>/metrics.json)")
    if job.constraints:
        print(f"  budgets     : {', '.join(job.constraints)}: {out.n_feasible} of {out.n_evaluated - out.n_failed} "
              f"evaluated candidates meet them")
    if job.engine != "local":
        print(f"  engine      : {out.engine}")
    print(f"  evaluations : {out.files['evaluations']}  (record: {out.files['record']})")
    print(f"  front       : {out.files['pareto']}  (gallery: {out.files['gallery']})")
    models = out.files["models"]
    print(f"  models      : {models[0].parent if models else job.models_dir}/<archid>/ ({len(models)} folders)")
    for plot in out.files["plots"]:
        print(f"  plot        : {plot}")
    print(f"  cache       : {out.files['cache']}")
    print(f"  report      : {out.files['report']}  (open it in a browser)")
    return 0
