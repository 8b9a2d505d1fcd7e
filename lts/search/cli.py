"""``lts search`` (and ``python search.py``): the flags of a search, and its main.

The script at the top of the repository and the ``lts`` command both call :func:`main`; the help text
below is what ``-h`` prints.
"""

from __future__ import annotations

import argparse

from lts.core.cli import ArgumentParser, build_settings, default_preset, load_preset
from lts.cost.objectives import objectives_help
from lts.cost.quantize import PRECISIONS
from lts.cost.target import TARGETS

DESCRIPTION = "Search GPT-2 architectures for the Pareto front of quality proxy vs ONNX latency and memory."
EPILOG = """\
Defaults come from configs/search.yaml; any flag overrides its key. Examples (`lts search` runs the same):
  python search.py                                   # the default search (Archai's space)
  python search.py --generations 2 --population 6 --seq-len 32 --run-dir runs/tiny
  python search.py --resume                          # continue the latest killed run
"""


def _settings() -> type:
    from lts.search.job import SearchJob

    return SearchJob


def parse_args(argv: list[str] | None, prog: str | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and the parsed flags; `prog` names the program in usage and errors (default: the script's name)."""
    p = ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter, settings=_settings, preset="search")
    p.add_argument("--config", help="YAML preset (default: configs/search.yaml)")
    p.add_argument("--generations", type=int, help="NSGA-II generations, the initial population included (>= 1)")
    p.add_argument("--population", type=int, help="candidates per generation (>= 2)")
    p.add_argument("--seed", type=int, help="random seed: same seed, same candidates")
    p.add_argument("--seq-len", dest="seq_len", type=int, help="tokens per timed forward pass")
    p.add_argument("--context", type=int, help="tokens in the KV cache when a decoding step is timed "
                                                "(onnx_decode_latency_s); generation memory decodes up to it")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (none: min(4, cores))")
    p.add_argument("--objectives", help=objectives_help())
    p.add_argument("--constraint", dest="constraints", action="append", metavar="NAME<=VALUE",
                   help="a budget on any objective, NAME<=VALUE or NAME>=VALUE, in its unit or display unit "
                        "(e.g. onnx_generation_memory_mb<=300, onnx_decode_latency_s<=20ms); repeatable; "
                        "replaces the preset's constraints")
    p.add_argument("--target", choices=sorted(TARGETS), help="where graphs are measured")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="weights of the measured graphs: fp32, or int8 (each graph quantized with ONNX Runtime's "
                        "dynamic quantization first, as generate_text.py --precision int8 runs it)")
    p.add_argument("--out", "--models-dir", dest="models_dir", help="where the front goes, one folder per archid")
    p.add_argument("--assets-dir", dest="assets_dir", help="where the Pareto plots go")
    p.add_argument("--run-dir", dest="run_dir", help="folder for evaluations.csv, pareto.csv, checkpoint "
                                                     "(default runs/<date>-<time>-seed<seed>-<pid>)")
    p.add_argument("--runs-dir", dest="runs_dir", help="parent of the default run folders")
    p.add_argument("--workers", type=int, help="evaluations in flight at once (timing stays one at a time)")
    p.add_argument("--engine", choices=["local", "ray"], help="where evaluations run (ray: pip install .[distributed])")
    p.add_argument("--ray-address", dest="ray_address",
                   help="Ray cluster to join (with --engine ray): HOST:PORT as `ray start --head` prints it, or "
                        "auto; default: start Ray on this machine")
    p.add_argument("--ray-hardware", dest="ray_hardware", metavar="ID",
                   help="with --engine ray: the hardware fingerprint id of the nodes that measure (default: this "
                        "machine's, or the cluster's only kind); a mixed cluster lists its ids")
    p.add_argument("--latency-mode", dest="latency_mode", choices=["composed", "full"],
                   help="composed: base + n_layer x block, timings cached per shape (fast); full: whole graph")
    p.add_argument("--timeout", dest="timeout_s", type=float, help="seconds before a measurement is failed")
    p.add_argument("--cache", help="SQLite cache of evaluations (default evaluations.sqlite in the cache root: "
                                   "$LTS_CACHE_DIR, else $XDG_CACHE_HOME/lts, else ~/.cache/lts)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir, or the latest in runs/")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p, p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run a search as the flags in `argv` (default: ``sys.argv[1:]``) say; prints where its files went."""
    from lts.search.job import SearchJob, run_job

    parser, args = parse_args(argv, prog)
    preset_path = args.config or default_preset("search")
    preset = load_preset(preset_path, required=args.config is not None)
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "resume", "no_progress")}
    job = build_settings(SearchJob, preset, flags, source=str(preset_path))
    given = {k for k, v in flags.items() if v is not None}
    out = run_job(job, resume=args.resume, given=given, progress=not args.no_progress)

    print(f"\nevaluated {out.n_evaluated} architectures ({out.n_cached} from cache, {out.n_failed} failed) "
          f"in {out.seconds:.1f} s; Pareto front: {len(out.front_ids)} models ({out.n_robust} robust to noise), "
          f"hypervolume {out.hypervolume:.4f}")
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
