"""Benchmark causal language models side by side: loading, generation, diversity, memory.

The parent process (``run_benchmark``) never imports torch. It checks the models up
front (``lts.core.hub.local_snapshot``: a local folder, or a hub id already downloaded into local
files), then runs each model in its own child process, one after the other (forked from
a multiprocessing fork server that has torch and transformers imported, so a model's
process starts in milliseconds; the torch side is ``lts.compare.worker``), so one model's
memory cannot pollute the next and a crash (out of memory, a broken checkpoint) becomes a
failed row instead of ending the run.

Definitions (also in ``benchmark.py --help`` and the README):

- Loading Time (s): wall time from files on disk to a ready model + tokenizer
  (``AutoTokenizer.from_pretrained`` + ``AutoModelForCausalLM.from_pretrained`` +
  ``eval()``), torch/transformers already imported, files already local. Median
  over ``repeats`` loads in the same child process.
- Generation Time (s): wall time of one ``model.generate`` (KV cache) producing
  exactly ``max_new_tokens`` tokens (EOS suppressed so every model does the same
  work), batch 1, after a short untimed warm-up. Median over ``repeats``.
- Time to First Token (s): from calling ``generate`` to the first new token
  (prefill + one sampling step). Tokens/s = New Tokens / Generation Time.
- Diversity Score: unique words / total words of the generated continuation
  (words = whitespace-separated, lower-cased, punctuation stripped; 0 if no word).
  Distinct-2: the same ratio for word bigrams.
- Memory Usage (MB): parameters x bytes per parameter of the loaded dtype / 2**20
  (the usual estimate). Peak Memory (MB): measured peak resident memory (RSS) of
  the child process that ran the model (the kernel's high-water mark, cross-checked
  by sampling from outside). Model Memory (MB): that peak minus the child's RSS
  just before loading (torch and transformers imported): what the model costs.
  MB means MiB (2**20 bytes) throughout.

Sampling is seeded: ``torch.manual_seed(seed)`` before every ``generate``, so the
same seed on the same machine and library versions gives the same text.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from lts.compare import plots, worker
from lts.compare.settings import COLUMNS, CSV_NAME, BenchSettings
from lts.core.errors import LTSError
from lts.core.fileio import check_creatable_dir, check_writable_dir, load_prompts
from lts.core.hub import local_snapshot
from lts.core.procs import MIB, ChildError, ChildProcess
from lts.core.tables import write_csv

# ---------------------------------------------------------------- the run (parent)

@dataclass
class ModelRun:
    """What the child process reported for one model (plus what the parent measured)."""

    model: str
    load: dict[str, Any] = field(default_factory=dict)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    peak_rss_mb: float | None = None


@dataclass
class BenchResult:
    rows: list[dict[str, Any]]
    csv_path: Path
    charts: list[Path]
    html_path: Path | None
    failed: dict[str, str]            # model -> reason
    settings: BenchSettings
    prompts: tuple[str, ...]


def run_benchmark(settings: BenchSettings, progress: bool | None = None) -> BenchResult:
    """Run every model on every prompt, write results.csv (+ charts, + HTML); return the rows.

    Rule for models that cannot be used: a model that fails the up-front check (folder
    missing, not cached offline, not on the hub, config.json not JSON, a corrupt or cut-short
    ``.safetensors``) or fails while running becomes a row
    with ``Status = failed: reason`` and the others still run. Only when *no* model
    passes the up-front check is it an error (LTSError -> exit status 2); nothing is
    written then.
    """
    prompts = load_prompts(settings.prompts_file) if settings.prompts_file else settings.prompts
    _output_folder(settings.out, check_creatable_dir)  # checked first; made only once every input has passed

    resolved: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for spec in settings.models:
        try:
            resolved[spec] = local_snapshot(spec, settings.trust_remote_code)
        except LTSError as exc:
            failed[spec] = str(exc)
    if not resolved:
        raise LTSError("no usable model: " + "; ".join(failed.values()))
    out = _output_folder(settings.out, check_writable_dir)

    from tqdm.auto import tqdm

    runs: list[ModelRun] = []
    total = len(settings.models) * len(prompts)
    with tqdm(total=total, unit="prompt", desc="benchmark", disable=(None if progress is None else not progress),
              dynamic_ncols=True) as bar:
        for spec in settings.models:
            if spec in failed:
                runs.append(ModelRun(spec, error=failed[spec]))
                bar.update(len(prompts))
                continue
            bar.set_postfix_str(spec[-40:])
            run = run_model(spec, resolved[spec], prompts, settings, on_prompt=lambda: bar.update(1))
            bar.update(len(prompts) - len(run.prompts))
            if run.error:
                failed[spec] = run.error
            runs.append(run)

    rows = [row for run in runs for row in rows_of(run, prompts, settings)]
    csv_path = out / CSV_NAME
    write_csv(csv_path, rows, COLUMNS)
    charts: list[Path] = []
    html_path = None
    ok_rows = [r for r in rows if r["Status"] == "ok"]
    if settings.charts and ok_rows:
        charts = plots.write_charts(rows, out, settings)
    if settings.html:
        html_path = plots.write_html(rows, out / "benchmark.html", settings)
    return BenchResult(rows, csv_path, charts, html_path, failed, settings, tuple(prompts))


def _output_folder(path: str, check: Callable[[str], Path]) -> Path:
    try:
        return check(path)
    except OSError as exc:
        raise LTSError(f"output folder not writable: {path} ({exc.strerror or exc})") from None


# Imported once by the fork server; every model's process is forked from it, clean (no model
# ever loaded there), so it starts in milliseconds instead of re-importing torch (~6 s a model).
PRELOAD = ("torch", "transformers", "transformers.modeling_utils", "transformers.generation",
           "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto", "psutil")


def run_model(spec: str, folder: Path, prompts: Sequence[str], settings: BenchSettings,
              on_prompt: Callable[[], None] | None = None, poll_s: float = 0.02) -> ModelRun:
    """Run one model in its own process (``lts.compare.worker``); sample its RSS from outside until it ends."""
    run = ModelRun(spec)
    job = {"folder": str(folder), "prompts": list(prompts), "settings": dataclasses.asdict(settings)}
    peak = 0
    with tempfile.TemporaryDirectory(prefix="lts-compare-") as tmp:
        try:
            with ChildProcess(worker.child_main, (job,), preload=PRELOAD, timeout_s=settings.timeout_s,
                              name=f"lts-compare {spec}", log_path=Path(tmp) / "stderr.txt") as child:
                sampler = child.sampler(poll_s)
                kind = ""
                while kind not in ("done", "error"):
                    kind, payload = child.recv()
                    _take(run, kind, payload, on_prompt)
                peak = sampler.stop()
        except ChildError as exc:
            peak = max((s.peak for s in child.samplers), default=0)
            run.error = run.error or (f"timed out after {settings.timeout_s:g} s" if exc.timed_out else f"worker {exc}")
    if run.error is None and len(run.prompts) < len(prompts):
        run.error = "the model's process stopped before finishing its prompts"
    reported = run.load.get("peak_rss_mb") or 0.0
    run.peak_rss_mb = max(peak / MIB, reported, run.peak_rss_mb or 0.0) or None
    return run


def _take(run: ModelRun, kind: str, msg: Any, on_prompt: Callable[[], None] | None) -> None:
    if kind == "load":
        run.load.update(msg)
    elif kind == "prompt":
        run.prompts.append(msg)
        if on_prompt:
            on_prompt()
    elif kind == "done":
        run.load["peak_rss_mb"] = msg["peak_rss_mb"]
        run.load["gpu_peak_mb"] = msg.get("gpu_peak_mb")
    elif kind == "error":  # the worker's own report (a dict), or an exception it did not catch (a string)
        run.error = msg["message"] if isinstance(msg, dict) else msg
        run.peak_rss_mb = msg.get("peak_rss_mb") if isinstance(msg, dict) else None


def rows_of(run: ModelRun, prompts: Sequence[str], settings: BenchSettings) -> list[dict[str, Any]]:
    """One CSV row per prompt; prompts the model did not finish get its failure reason."""
    load = run.load
    common = {
        "Model": run.model,
        "Parameters": load.get("parameters"),
        "Dtype": load.get("dtype"),
        "Memory Usage (MB)": load.get("param_mb"),
        "Peak Memory (MB)": run.peak_rss_mb,
        "Model Memory (MB)": (run.peak_rss_mb - load["baseline_rss_mb"]
                              if run.peak_rss_mb and "baseline_rss_mb" in load else None),
        "GPU Peak Memory (MB)": load.get("gpu_peak_mb"),
        "Loading Time (s)": load.get("load_s"),
        "Loading Time Spread (s)": load.get("load_spread_s"),
        "Repeats": settings.repeats,
        "Max New Tokens": settings.max_new_tokens,
        "Seed": settings.seed,
        "Threads": load.get("threads", settings.threads or None),
        "Device": settings.device,
    }
    done = {p["index"]: p for p in run.prompts}
    rows = []
    for i, prompt in enumerate(prompts):
        row = {c: None for c in COLUMNS}
        row.update(common)
        row["Prompt"] = prompt
        p = done.get(i)
        if p is None:
            row["Status"] = f"failed: {run.error or 'not run'}"
        else:
            row.update({
                "Status": "ok",
                "Generated Text": p["text"],
                "Diversity Score": p["diversity"],
                "Distinct-2": p["distinct2"],
                "Generation Time (s)": p["gen_s"],
                "Generation Time Spread (s)": p["gen_spread_s"],
                "Time to First Token (s)": p["ttft_s"],
                "Tokens/s": p["new_tokens"] / p["gen_s"] if p["gen_s"] > 0 else None,
                "New Tokens": p["new_tokens"],
            })
        rows.append(row)
    return rows


def summary_table(result: BenchResult) -> str:
    """A per-model text table (means over prompts) for the terminal."""
    header = ("model", "status", "load s", "gen s", "ttft s", "tok/s", "diversity", "est MB", "peak MB")
    lines = []
    for model in result.settings.models:
        rows = [r for r in result.rows if r["Model"] == model]
        ok = [r for r in rows if r["Status"] == "ok"]

        def mean(c: str, ok: list[dict[str, Any]] = ok) -> float | None:
            return statistics.fmean(r[c] for r in ok) if ok and all(r[c] is not None for r in ok) else None

        status = "ok" if len(ok) == len(rows) else ("failed" if not ok else f"{len(ok)}/{len(rows)} ok")
        cells = (model, status, mean("Loading Time (s)"), mean("Generation Time (s)"),
                 mean("Time to First Token (s)"), mean("Tokens/s"), mean("Diversity Score"),
                 rows[0]["Memory Usage (MB)"], rows[0]["Peak Memory (MB)"])
        lines.append(tuple(_fmt_cell(c) for c in cells))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*line) for line in [header, *lines])


def _fmt_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if value < 1000 else f"{value:.0f}"
    return str(value)
