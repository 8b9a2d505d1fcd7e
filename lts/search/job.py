"""The `python search.py` job: settings in, front + files out. The script only parses flags."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from lts.core import fileio
from lts.core.errors import JobFailed, LTSError
from lts.core.settings import Check, Choice, Integer, Optional, Settings, Text, borrow, resumable, setting, specs
from lts.core.tables import write_csv
from lts.cost.evaluator import DEFAULT_OBJECTIVES, EvalSettings, Evaluator
from lts.cost.objectives import get as get_objective
from lts.cost.objectives import objectives_help, parse_objectives, probes_for
from lts.cost.settings import MeasureSettings
from lts.cost.store import default_cache_path
from lts.cost.target import TargetSettings
from lts.search.checkpoint import CHECKPOINT, read_run_state
from lts.search.constraints import check_possible, feasible, parse_constraints, total_violation
from lts.search.executors import make_executor
from lts.search.fronts import hypervolume, robust_front
from lts.search.htmlreport import RUN_INFO, write_report
from lts.search.loop import run_search
from lts.search.record import load_calibration, save_calibration
from lts.search.report import evaluation_rows, gallery_markdown, plot_fronts, read_manifest, write_models
from lts.search.settings import SearchSettings
from lts.search.space import Space, space_from_dict, space_to_dict
from lts.search.strategies import check_listable
from lts.search.verify import measure_front_whole

log = logging.getLogger(__name__)
JOB_FILE = "job.json"
AUTO_EXACT_LIMIT = 20_000  # --strategy auto lists a space this small for its exact front (Archai's 5,880 are)
S = TypeVar("S")


class _Objectives(Check):
    """Two or more registered objective names: a comma-separated text, or a list (kept as the text)."""

    def __call__(self, label: str, value: Any) -> Any:
        value = ",".join(value) if isinstance(value, (list, tuple)) else value
        if not isinstance(value, str):
            raise LTSError(f"{label} must be comma-separated objective names, got {value!r}")
        parse_objectives(value)
        return value

    def describe(self) -> str:
        return "two or more objective names, comma-separated (or a list)"


class _Constraints(Check):
    """Budgets, NAME<=VALUE or NAME>=VALUE: a list (one text is a list of one), kept in their canonical form."""

    def __call__(self, label: str, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)):
            raise LTSError(f"{label} must be a list like [onnx_memory_mb<=300], got {value!r}")
        return [str(c) for c in parse_constraints(value)]

    def describe(self) -> str:
        return "a list of NAME<=VALUE or NAME>=VALUE"


class _Mapping(Check):
    def __call__(self, label: str, value: Any) -> Any:
        if not isinstance(value, dict):
            raise LTSError(f"{label} must be a mapping, got {type(value).__name__}")
        return value

    def describe(self) -> str:
        return "a mapping (see docs/extending.md, search spaces)"


@dataclass(frozen=True)
class SearchJob(Settings):
    """Every setting of a search run: ``lts search -h`` lists them with their defaults, ``--config FILE`` takes
    them as YAML keys."""

    generations: int = borrow(SearchSettings, "generations", resumable=True)  # a resumed run may go on longer
    population: int = borrow(SearchSettings, "population")
    seed: int = borrow(SearchSettings, "seed")
    strategy: str = borrow(SearchSettings, "strategy")
    seq_len: int = borrow(MeasureSettings, "seq_len")
    context: int = borrow(MeasureSettings, "context")
    threads: int | None = borrow(TargetSettings, "threads")
    target: str = borrow(TargetSettings, "target")
    precision: str = borrow(TargetSettings, "precision")
    objectives: str = setting(",".join(DEFAULT_OBJECTIVES), objectives_help, _Objectives())
    constraints: list[str] = setting(
        help="a budget on any objective, NAME<=VALUE or NAME>=VALUE, in its unit or display unit (e.g. "
             "onnx_generation_memory_mb<=300, onnx_decode_latency_s<=20ms); repeatable; replaces the preset's "
             "constraints", check=_Constraints(), factory=list, flag="--constraint", append=True,
        metavar="NAME<=VALUE")
    models_dir: str = setting("models", "where the front goes, one folder per archid", Text(nonempty=True),
                              flag=("--out", "--models-dir"), resumable=True)
    assets_dir: str = setting("assets", "where the Pareto plots go", Text(nonempty=True), resumable=True)
    runs_dir: str = setting("runs", "parent of the default run folders", Text(nonempty=True))
    run_dir: str | None = setting(None, "folder for evaluations.csv, pareto.csv, checkpoint (default "
                                        "<runs_dir>/<date>-<time>-seed<seed>-<pid>)", Optional(Text(nonempty=True)))
    workers: int = setting(1, "evaluations in flight at once (timing stays one at a time)", Integer(ge=1),
                           resumable=True)
    engine: str = setting("local", "where evaluations run (ray: pip install .[distributed])",
                          Choice(("local", "ray")), resumable=True)
    ray_address: str | None = setting(None, "Ray cluster to join (with engine ray): HOST:PORT as `ray start "
                                            "--head` prints it, or auto; none: start Ray on this machine",
                                      Optional(Text(nonempty=True)), resumable=True)
    ray_hardware: str | None = setting(None, "with engine ray: the hardware fingerprint id of the nodes that measure "
                                             "(none: this machine's, or the cluster's only kind); a mixed cluster "
                                             "lists its ids", Optional(Text(nonempty=True)), metavar="ID")
    latency_mode: str = borrow(EvalSettings, "latency_mode")
    # A search predicts what it can (the front it writes is measured whole: lts.search.verify); lts evaluate
    # measures.
    costs: str = borrow(EvalSettings, "costs", default="predicted")
    timeout_s: float = borrow(MeasureSettings, "timeout_s", resumable=True)  # decides failure, not values
    cache: str | None = setting(None, "SQLite cache of evaluations (none: evaluations.sqlite in the cache root: "
                                      "$LTS_CACHE_DIR, else $XDG_CACHE_HOME/lts, else ~/.cache/lts)",
                                Optional(Text(nonempty=True)), resumable=True)
    space: dict[str, Any] = setting(help="the search space (YAML only): family (default gpt2), then its fields; "
                                         "gpt2's: n_layer, n_embd, n_inner, n_head as a list or {start, stop, step} "
                                         "(stop exclusive), vocab_size, n_positions, per_layer (a key left out: "
                                         "Archai's LTS space)",
                                    check=_Mapping(), factory=lambda: space_to_dict(space_from_dict({})), flag=False)

    def check(self) -> None:
        space, settings, evaluation = self.search_space(), self.search_settings(), self.eval_settings()  # fail early
        if evaluation.on_target and self.seq_len > space.max_positions:  # only a timed forward uses it
            raise LTSError(f"seq_len {self.seq_len} exceeds the longest sequence the space's models take "
                           f"({space.max_positions})")
        if evaluation.generation and self.context > space.max_positions:  # only a decoding step uses it
            raise LTSError(f"context {self.context} exceeds the longest sequence the space's models take "
                           f"({space.max_positions})")
        check_possible(settings.constraints, space)
        if settings.strategy == "exhaustive" and self.strategy == "exhaustive":
            check_exhaustive(settings, evaluation, space)

    def search_space(self) -> Space:
        return space_from_dict(self.space)

    def search_settings(self) -> SearchSettings:
        settings = _nested(self, SearchSettings)
        return replace(settings, strategy=self.chosen_strategy()[0]) if settings.strategy == "auto" else settings

    def chosen_strategy(self) -> tuple[str, str]:
        """(the strategy the search runs, why): ``strategy`` unless it is auto, which takes the exact front where
        every figure is computed, composed or predicted without measuring each candidate, the space has at most
        ``AUTO_EXACT_LIMIT`` architectures (seconds per thousand candidates then) and there are two objectives,
        else NSGA-II; and NSGA-II when its budget (generations, population) was set to other than the defaults: the
        user chose it. Two objectives only: the front written is measured whole, member by member, and an exact
        front of three smooth objectives is most of the space (Archai's, params + latency + memory predicted: 700
        members after 8 of its 12 batches), where two make a curve of tens."""
        if self.strategy != "auto":
            return self.strategy, "asked for"
        defaults = {f.name: f.default for f in fields(SearchSettings)}
        tuned = [f"{name} {getattr(self, name)}" for name in ("generations", "population")
                 if getattr(self, name) != defaults[name]]
        if tuned:
            return "nsga2", f"NSGA-II's budget was set ({', '.join(tuned)})"
        figures, evaluation = _nested(self, SearchSettings).figures, self.eval_settings()
        per = set(evaluation.per_candidate())
        measured = [name for name in figures if get_objective(name).probe in per]
        size = self.search_space().size
        if measured:
            return "nsga2", f"{', '.join(measured)} measured per candidate"
        if size > AUTO_EXACT_LIMIT:
            return "nsga2", f"{size:,.0f} architectures, more than the {AUTO_EXACT_LIMIT:,} listed for an exact front"
        if len(_nested(self, SearchSettings).objectives) > 2:
            return "nsga2", ("three or more objectives: their exact front holds most of the space, each member to be "
                             "measured whole")
        return "exhaustive", f"every one of the {size:,} architectures costs no measurement of its own: the exact front"

    def eval_settings(self) -> EvalSettings:
        settings = _nested(self, SearchSettings)  # its figures (objectives and budgets) decide what is measured
        return _nested(self, EvalSettings, target=_nested(self, TargetSettings).make(),
                       on_target=settings.needs_measurement, probes=probes_for(settings.figures))

    def cache_path(self) -> Path:
        return Path(self.cache) if self.cache else default_cache_path()


RESUMABLE = resumable(SearchJob)  # the settings a resumed run may change (declared resumable=True)


def _nested(job: SearchJob, cls: type[S], **given: Any) -> S:
    """`cls` made from the job: each field the job offers under its name (``borrow``) takes the job's value, a
    field holding settings of which the job offers some (EvalSettings' MeasureSettings) is made the same way,
    and `given` holds what the job does not hold as it is (a Target, made from the job's TargetSettings)."""
    offered = specs(SearchJob)
    values: dict[str, Any] = {}
    for f in fields(cls):
        inner = f.default_factory
        if not f.init or f.name in given:
            continue
        if f.name in offered:
            values[f.name] = getattr(job, f.name)
        elif isinstance(inner, type) and issubclass(inner, Settings) and offered.keys() & specs(inner).keys():
            values[f.name] = _nested(job, inner)
    return cls(**values, **given)


@dataclass(frozen=True)
class JobOutcome:
    run_dir: Path
    n_evaluated: int
    n_failed: int
    n_cached: int
    front_ids: tuple[str, ...]
    hypervolume: float
    files: dict[str, Any]
    seconds: float
    n_robust: int = 0
    n_whole: int = 0  # front members whose latency was timed whole (lts.search.verify)
    n_feasible: int = 0
    engine: str = "local"
    strategy: str = ""  # what ran, and why (SearchJob.chosen_strategy)


def _check_dirs(paths: list[tuple[Path, str]], check: Any) -> None:
    for path, what in paths:
        try:
            check(path)
        except OSError as exc:
            raise LTSError(f"{what} is not writable: {path} ({exc.strerror or exc})") from None


def find_resumable(runs_dir: Path) -> Path:
    runs = sorted((p for p in runs_dir.glob("*") if (p / CHECKPOINT).is_file() and (p / JOB_FILE).is_file()),
                  key=lambda p: (p / CHECKPOINT).stat().st_mtime)
    if not runs:
        raise LTSError(f"nothing to resume: no run with a checkpoint in {runs_dir} (pass --run-dir)")
    return runs[-1]


def prepare(job: SearchJob, resume: bool, given: set[str]) -> tuple[SearchJob, Path]:
    """Fix the run folder; on resume, reload the run's own settings (a few may be overridden)."""
    if not resume:
        run_dir = Path(job.run_dir) if job.run_dir else Path(job.runs_dir) / (
            time.strftime("%Y%m%d-%H%M%S") + f"-seed{job.seed}-{os.getpid()}")  # unique per process
        if (run_dir / CHECKPOINT).exists():
            raise LTSError(f"{run_dir} already holds a search; pass --resume to continue it or another --run-dir")
        return replace(job, run_dir=str(run_dir)), run_dir
    run_dir = Path(job.run_dir) if job.run_dir else find_resumable(Path(job.runs_dir))
    if not (run_dir / JOB_FILE).is_file() or not (run_dir / CHECKPOINT).is_file():
        raise LTSError(f"nothing to resume in {run_dir}: it has no {CHECKPOINT}")
    try:
        # a run saved before costs could be predicted measured them: it resumes so
        saved = SearchJob(**{"costs": "measured", **json.loads((run_dir / JOB_FILE).read_text())})
    except (TypeError, json.JSONDecodeError) as exc:
        raise LTSError(f"cannot read {run_dir / JOB_FILE}: {exc}") from None
    changed = sorted(k for k in given - RESUMABLE - {"run_dir", "runs_dir", "resume"}
                     if getattr(job, k) != getattr(saved, k))
    if changed:
        raise LTSError(f"cannot change {', '.join(changed)} when resuming {run_dir} (only "
                       f"{', '.join(sorted(RESUMABLE))} may change)")
    overrides = {k: getattr(job, k) for k in given & RESUMABLE}
    return replace(saved, **overrides, run_dir=str(run_dir)), run_dir


def run_job(job: SearchJob, resume: bool = False, given: set[str] | None = None, progress: bool = True) -> JobOutcome:
    """Run (or resume) a search and write its outputs.

    Raises JobFailed (exit status 1) when no candidate succeeded: the run folder keeps the
    record of every failure, and models/ and the plots are left exactly as they were.
    """
    t0 = time.perf_counter()
    job, run_dir = prepare(job, resume, given or set())
    space, settings, eval_settings = job.search_space(), job.search_settings(), job.eval_settings()
    models_dir, assets_dir = Path(job.models_dir), Path(job.assets_dir)
    folders = [(run_dir, "run folder"), (models_dir, "models folder"), (assets_dir, "assets folder"),
               (job.cache_path().parent, "cache folder")]
    # Everything that can be refused is checked before anything is created or written.
    _check_dirs(folders, fileio.check_creatable_dir)
    if resume:
        read_run_state(run_dir)
    executor = make_executor(job.engine, job.workers, job.ray_address, job.ray_hardware)
    try:
        # Ray: which nodes measure, and so the hardware whose figures are stored and served (None: this machine)
        hardware = executor.prepare(eval_settings)
        evaluator = Evaluator(eval_settings, job.cache_path(), calibration_s=load_calibration(run_dir) if resume
                              else None, hardware=hardware, time_reference=executor.time_reference)
        _check_dirs(folders, fileio.check_writable_dir)
        fileio.write_json(run_dir / JOB_FILE, asdict(job))
        started = read_manifest(models_dir)  # the front this run replaces (and nothing placed later)
        run_id = f"{run_dir.name}-{hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:6]}"
        strategy, why = job.chosen_strategy()
        if progress:  # before the work: what it is about to do, and why
            print(f"strategy {strategy}: {why}", file=sys.stderr, flush=True)
        evaluator.calibrate()
        save_calibration(run_dir, evaluator.calibration_s, evaluator.conditions())
        results, front, state = run_search(space, settings, evaluator, executor, run_dir, resume=resume,
                                           progress=progress)
        results, front, composed = measure_front_whole(results, settings, evaluator, executor, run_dir, progress)
        engine = executor.describe()
    finally:
        executor.close()

    conditions = evaluator.conditions()
    front_ids = {r.archid for r in front}
    robust = robust_front(front, settings.objectives)
    rows = evaluation_rows(state.log, results, front_ids, robust)
    write_csv(run_dir / "evaluations.csv", rows)
    write_csv(run_dir / "pareto.csv", [row for row in rows if row["front"]])  # archids are unique
    def record_page() -> Path:  # the run's report, failed runs included (it lives in the run folder)
        fileio.write_json(run_dir / RUN_INFO, run_info(time.perf_counter() - t0, engine))
        return write_report(run_dir, models_dir)

    if not any(r.ok for r in results):
        report = record_page()
        raise JobFailed(f"every candidate failed ({_reasons(results)}); {models_dir}/ and {assets_dir}/ were left "
                        f"as they were; the record is in {run_dir / 'evaluations.jsonl'} (and {report})")
    n_feasible = sum(r.ok and feasible(r, settings.constraints) for r in results)
    if not front:
        record_page()
        raise JobFailed(_no_feasible(results, settings, run_dir) + f"; {models_dir}/ and {assets_dir}/ were left "
                        f"as they were")
    gallery = gallery_markdown(front, robust)
    fileio.write_text(run_dir / "gallery.md", gallery)
    model_dirs = write_models(front, models_dir, conditions, run_id, started, robust,
                              lambda members: _models_readme(job, conditions, gallery, run_id, members), composed)
    plots = plot_fronts(results, front, settings.objectives, assets_dir, conditions, robust)
    report = record_page()
    seconds = time.perf_counter() - t0
    return JobOutcome(
        run_dir=run_dir, n_evaluated=len(results), n_failed=sum(not r.ok for r in results),
        n_cached=sum(r.cached for r in results), front_ids=tuple(r.archid for r in front),
        hypervolume=hypervolume(front, results, settings.objectives),
        files={"evaluations": run_dir / "evaluations.csv", "pareto": run_dir / "pareto.csv",
               "gallery": run_dir / "gallery.md", "models": model_dirs, "plots": plots,
               "cache": job.cache_path(), "record": run_dir / "evaluations.jsonl", "report": report},
        seconds=seconds, n_robust=len(robust), n_feasible=n_feasible, engine=engine, n_whole=len(composed),
        strategy=f"{strategy} ({why})",
    )


def check_exhaustive(settings: SearchSettings, evaluation: EvalSettings, space: Space) -> None:
    """One line when an exhaustive search would measure every candidate whole (hours for thousands of them) or
    list a space too large to list."""
    per = set(evaluation.per_candidate())
    whole = [name for name in settings.figures if get_objective(name).probe in per]
    if whole:
        listed = ", ".join(whole)
        why = "measured per candidate" + (" (--latency-mode full)" if evaluation.latency_mode == "full" else "")
        raise LTSError(f"--strategy exhaustive costs every architecture from measured parts, but {listed} "
                       f"{'is' if len(whole) == 1 else 'are'} {why}; choose objectives and budgets among "
                       f"{', '.join(composable_objectives())}, predict costs (--costs predicted), or --strategy "
                       f"nsga2")
    check_listable(space)


def composable_objectives() -> list[str]:
    """Searchable objectives computed from the config or composed from stored part timings."""
    from lts.cost import probes
    from lts.cost.objectives import REGISTRY

    return [o.name for o in REGISTRY.values() if o.searchable and (o.probe is None or probes.composable(o.probe))]


def run_info(seconds: float, engine: str) -> dict[str, Any]:
    """How the run was made, for its report: the command line, wall time, where it ran, library versions."""
    import platform
    import shlex
    import sys
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("onnxruntime", "onnx", "pymoo", "transformers", "torch", "numpy", "ray"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    argv = list(sys.argv)
    if argv and Path(argv[0]).parts[-2:] == ("lts", "__main__.py"):  # python -m lts search ...
        argv = ["python", "-m", "lts", *argv[1:]]
    elif argv and argv[0].endswith(".py"):
        argv = ["python", *argv]
    return {"command": " ".join(shlex.quote(a) for a in argv), "wall_s": round(seconds, 3), "engine": engine,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "versions": versions}


CLOSEST_FILE = "closest.csv"  # a run whose budgets nobody met: the least infeasible candidates


def _no_feasible(results: list, settings: SearchSettings, run_dir: Path, show: int = 5) -> str:
    """Write the least infeasible candidates to the run folder; the message names the closest few."""
    ok = sorted((r for r in results if r.ok), key=lambda r: total_violation(r, settings.constraints))
    rows = [{"archid": r.archid, **r.config.to_dict(),
             "total_violation": round(total_violation(r, settings.constraints), 6),
             **{c.name: r[c.name] for c in settings.constraints}} for r in ok]
    write_csv(run_dir / CLOSEST_FILE, rows)
    closest = "; ".join(
        f"{r.archid} (" + ", ".join(f"{c.name}={get_objective(c.name).display(r[c.name])}"
                                    f"{get_objective(c.name).display_unit or get_objective(c.name).unit}"
                                    for c in settings.constraints) + ")" for r in ok[:show])
    budgets = ", ".join(map(str, settings.constraints))
    return (f"no evaluated candidate meets {budgets} ({len(ok)} evaluated); closest: {closest}; "
            f"all of them, least infeasible first, in {run_dir / CLOSEST_FILE}")


def _reasons(results: list) -> str:
    """'N of N: 12 x timeout after 1s, 3 x killed by SIGKILL' (the most common reasons first)."""
    counts = Counter(r.status.removeprefix("failed: ") for r in results if not r.ok)
    top = ", ".join(f"{n} x {reason}" for reason, n in counts.most_common(3))
    more = f", {len(counts) - 3} other reasons" if len(counts) > 3 else ""
    return f"{sum(counts.values())} of {len(results)}: {top}{more}"


def _models_readme(job: SearchJob, conditions: dict[str, Any], gallery: str, run_id: str,
                   members: dict[str, str]) -> str:
    others = sorted(a for a, run in members.items() if run != run_id)
    kept = (f"\nAlso kept: {len(others)} member(s) placed by another search that ran at the same time "
            f"({', '.join(others)}); see `front.json`.\n") if others else ""
    calib = conditions.get("calibration_ms")
    return (
        "# Pareto front of the last search\n\n"
        + (f"Written by `python search.py --strategy exhaustive` (every architecture of the space, objectives "
           f"`{job.objectives}`).\n" if job.strategy == "exhaustive" else
           f"Written by `python search.py` (seed {job.seed}, population {job.population}, "
           f"{job.generations} generations, objectives `{job.objectives}`).\n")
        + f"Measured with {conditions['describe']}, batch 1, seq_len {conditions['seq_len']}, "
        f"latency mode `{conditions['latency_mode']}`"
        + (f", latencies at the speed of the run's calibration (reference graph {calib} ms)" if calib else "")
        + ".\n`robust`: yes when the member stays non-dominated with differences within measured noise "
        "treated as ties; noise when its place on the front rests on such differences.\n"
        + kept + "\n" + gallery
    )
