"""Benchmark causal language models side by side: loading, generation, diversity, memory.

The parent process (``run_benchmark``) never imports torch. It checks the models up
front (``resolve_model``: a local folder, or a hub id already downloaded into local
files), then runs each model in its own child process, one after the other (forked from
a multiprocessing fork server that has torch and transformers imported, so a model's
process starts in milliseconds; the torch side is ``lts.bench_worker``), so one model's
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

import csv
import dataclasses
import io
import json
import math
import os
import statistics
import string
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from lts.errors import LTSError
from lts.executors import fork_context
from lts.fileio import check_writable_dir, write_text

DEFAULT_PROMPTS = (
    "In the near future, robots and humans",
    "Artificial intelligence will change the world in",
    "Data centers are critical to modern infrastructure because",
)
DTYPES = ("float32", "float16", "bfloat16", "auto")
DEVICES = ("cpu", "cuda")
CSV_NAME = "results.csv"
MIB = 2**20

COLUMNS = (
    "Model", "Prompt", "Status", "Generated Text", "Diversity Score", "Distinct-2",
    "Loading Time (s)", "Generation Time (s)", "Time to First Token (s)", "Tokens/s", "New Tokens",
    "Parameters", "Dtype", "Memory Usage (MB)", "Peak Memory (MB)", "Model Memory (MB)",
    "Loading Time Spread (s)", "Generation Time Spread (s)", "GPU Peak Memory (MB)",
    "Repeats", "Max New Tokens", "Seed", "Threads", "Device",
)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class BenchSettings:
    """Everything a benchmark run depends on (preset < flags; see configs/benchmark.yaml)."""

    models: tuple[str, ...] = ()          # hub ids or local model folders
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    prompts_file: str | None = None       # replaces `prompts`: one prompt a line, or a JSON list
    out: str = "."                        # folder for results.csv and the charts
    max_new_tokens: int = 50
    repeats: int = 1                      # loads and generations per model/prompt; median + spread
    seed: int = 0
    dtype: str = "float32"                # float32 | float16 | bfloat16 | auto (the checkpoint's)
    device: str = "cpu"                   # cpu | cuda
    threads: int = 0                      # torch intra-op threads; 0 = torch's default
    trust_remote_code: bool = False
    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    warmup_tokens: int = 8                # untimed generate before the timed ones
    timeout_s: float = 3600.0             # per model (its child process), then it is killed
    html: bool = False                    # also write benchmark.html (table + charts, self-contained)
    charts: bool = True

    def __post_init__(self) -> None:
        for name in ("models", "prompts"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise LTSError(f"{name} must be a list of strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.models:
            raise LTSError("no model given: pass one or more hub ids or local model folders")
        for i, m in enumerate(self.models):
            if not m.strip():
                raise LTSError("empty model name")
            if m in self.models[:i]:
                raise LTSError(f"model given twice: {m}")
        if self.prompts_file is None:
            check_prompts(self.prompts, "prompts")
        _check_int("max_new_tokens", self.max_new_tokens, 1)
        _check_int("repeats", self.repeats, 1)
        _check_int("seed", self.seed, 0)
        _check_int("threads", self.threads, 0)
        _check_int("top_k", self.top_k, 0)
        _check_int("warmup_tokens", self.warmup_tokens, 0)
        if self.dtype not in DTYPES:
            raise LTSError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device not in DEVICES:
            raise LTSError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name, low, high in (("temperature", 0.0, math.inf), ("top_p", 0.0, 1.0), ("timeout_s", 0.0, math.inf)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low < value <= high):
                raise LTSError(f"{name} must be a number in ({low}, {high}], got {value!r}")
        for name in ("trust_remote_code", "do_sample", "html", "charts"):
            if not isinstance(getattr(self, name), bool):
                raise LTSError(f"{name} must be true or false, got {getattr(self, name)!r}")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise LTSError(f"{name} must be an integer >= {low}, got {value!r}")


def check_prompts(prompts: Sequence[str], source: str) -> tuple[str, ...]:
    if not prompts:
        raise LTSError(f"no prompts in {source}")
    for i, p in enumerate(prompts, 1):
        if not isinstance(p, str):
            raise LTSError(f"prompt {i} in {source} is not a string: {p!r}")
        if not p.strip():
            raise LTSError(f"prompt {i} in {source} is empty")
    return tuple(prompts)


def load_prompts(path: str | os.PathLike) -> tuple[str, ...]:
    """Prompts from a file: a JSON list of strings (``.json``), else one prompt per line.

    In a text file blank lines are skipped (so a trailing newline is harmless); in a
    JSON list an empty string is an error.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LTSError(f"prompts file is not UTF-8 text: {path}") from None
    except OSError as exc:
        raise LTSError(f"cannot read prompts file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LTSError(f"malformed JSON in prompts file {path}: {exc}") from None
        if not isinstance(data, list):
            raise LTSError(f"prompts file {path} must hold a JSON list of strings")
        return check_prompts(data, str(path))
    return check_prompts([line.rstrip("\r") for line in text.split("\n") if line.strip()], str(path))


# ---------------------------------------------------------------- metrics (pure)

def words_of(text: str) -> list[str]:
    """Whitespace-separated words, lower-cased, punctuation stripped at both ends; empties dropped."""
    out = []
    for w in text.lower().split():
        w = w.strip(string.punctuation + "“”‘’«»…")
        if w:
            out.append(w)
    return out


def diversity(text: str) -> tuple[float, float]:
    """(unique words / words, unique word bigrams / bigrams) of `text`; 0.0 when there are none."""
    words = words_of(text)
    uni = len(set(words)) / len(words) if words else 0.0
    bigrams = list(zip(words, words[1:]))
    bi = len(set(bigrams)) / len(bigrams) if bigrams else 0.0
    return uni, bi


def median_spread(values: Sequence[float]) -> tuple[float, float]:
    """Median and spread (max - min) of repeated measurements."""
    return float(statistics.median(values)), float(max(values) - min(values))


# ---------------------------------------------------------------- resolving models (parent, no torch)

def _looks_like_path(spec: str) -> bool:
    return (spec.startswith((".", "/", "~")) or spec.endswith(("/", os.sep)) or "\\" in spec
            or spec.count("/") > 1)


def _has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHT_FILES) or any(folder.glob("*.safetensors"))


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode() if hasattr(constants, "is_offline_mode") else constants.HF_HUB_OFFLINE)


def resolve_model(spec: str, trust_remote_code: bool = False) -> Path:
    """The local folder holding `spec`'s files, downloading a hub id first when online.

    Raises LTSError with a one-line reason when the model cannot be used. Downloading
    happens here, never inside the timed load. Offline (``HF_HUB_OFFLINE=1``) a hub id
    works only if it is already in the Hugging Face cache.
    """
    path = Path(spec).expanduser()
    if path.exists():
        return _check_folder(path, spec)
    if _looks_like_path(spec):
        raise LTSError(f"model folder not found: {spec}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    offline = _hub_offline()
    patterns = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.safetensors"] + (["*.py"] if trust_remote_code else [])
    try:
        folder = Path(snapshot_download(spec, allow_patterns=patterns, local_files_only=offline))
        if not offline and not _has_weights(folder):  # an old repo with only pytorch_model*.bin
            folder = Path(snapshot_download(spec, allow_patterns=patterns + ["pytorch_model*.bin*"]))
    except HFValidationError:
        raise LTSError(f"'{spec}' is neither a local folder nor a valid hub id") from None
    except GatedRepoError:
        raise LTSError(f"'{spec}' is gated on the hub: accept its license there and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise LTSError(f"'{spec}' is not a local folder and no such model is on the Hugging Face hub "
                       "(or it is private)") from None
    except RevisionNotFoundError as exc:
        raise LTSError(f"'{spec}': {str(exc).splitlines()[0]}") from None
    except LocalEntryNotFoundError:
        if offline:
            raise LTSError(f"'{spec}' is not a local folder and not in the Hugging Face cache, and the hub is "
                           "offline (HF_HUB_OFFLINE=1): pass a local model folder, or download it once online") from None
        raise LTSError(f"'{spec}' is not a local folder and the Hugging Face hub cannot be reached: pass a local "
                       "model folder (or a cached model with HF_HUB_OFFLINE=1)") from None
    except OSError as exc:  # connection errors, disk full while downloading
        raise LTSError(f"'{spec}': cannot download from the Hugging Face hub ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}): pass a local model folder") from None
    return _check_folder(folder, spec)


def _check_folder(folder: Path, spec: str) -> Path:
    if not folder.is_dir():
        raise LTSError(f"{spec} is a file, not a model folder")
    if not (folder / "config.json").is_file():
        raise LTSError(f"{spec} has no config.json: not a transformers model folder")
    if not _has_weights(folder):
        raise LTSError(f"{spec} has no weights (*.safetensors or pytorch_model.bin): train it first, e.g. train.py")
    return folder.resolve()


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
    missing, not cached offline, not on the hub) or fails while running becomes a row
    with ``Status = failed: reason`` and the others still run. Only when *no* model
    passes the up-front check is it an error (LTSError -> exit status 2); nothing is
    written then.
    """
    prompts = load_prompts(settings.prompts_file) if settings.prompts_file else settings.prompts
    try:
        out = check_writable_dir(settings.out)
    except OSError as exc:
        raise LTSError(f"output folder not writable: {settings.out} ({exc.strerror or exc})") from None

    resolved: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for spec in settings.models:
        try:
            resolved[spec] = resolve_model(spec, settings.trust_remote_code)
        except LTSError as exc:
            failed[spec] = str(exc)
    if not resolved:
        raise LTSError("no usable model: " + "; ".join(failed.values()))

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
    write_text(csv_path, to_csv(rows))
    charts: list[Path] = []
    html_path = None
    ok_rows = [r for r in rows if r["Status"] == "ok"]
    if settings.charts or settings.html:
        from lts import bench_plots

        if settings.charts and ok_rows:
            charts = bench_plots.write_charts(rows, out, settings)
        if settings.html:
            html_path = bench_plots.write_html(rows, out / "benchmark.html", settings, charts)
    return BenchResult(rows, csv_path, charts, html_path, failed, settings, tuple(prompts))


# Imported once by the fork server; every model's process is forked from it, clean (no model
# ever loaded there), so it starts in milliseconds instead of re-importing torch (~6 s a model).
PRELOAD = ("torch", "transformers", "transformers.modeling_utils", "transformers.generation",
           "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto", "psutil")


def run_model(spec: str, folder: Path, prompts: Sequence[str], settings: BenchSettings,
              on_prompt: Callable[[], None] | None = None, poll_s: float = 0.02) -> ModelRun:
    """Run one model in its own process; sample its RSS from outside until it exits."""
    import psutil

    run = ModelRun(spec)
    with tempfile.TemporaryDirectory(prefix="lts-bench-") as tmp:
        job = Path(tmp) / "job.json"
        results = Path(tmp) / "results.jsonl"
        errlog = Path(tmp) / "stderr.txt"
        job.write_text(json.dumps({"folder": str(folder), "prompts": list(prompts),
                                   "settings": dataclasses.asdict(settings)}), encoding="utf-8")
        results.touch()
        peak = 0
        from lts.bench_worker import child_main

        child = fork_context(PRELOAD).Process(target=child_main, args=(str(job), str(results), str(errlog)),
                                          name=f"lts-bench {spec}", daemon=True)
        with open(results, "rb") as feed:
            child.start()
            try:
                proc = psutil.Process(child.pid)
                deadline = time.monotonic() + settings.timeout_s
                buf = b""
                while True:
                    alive = child.is_alive()
                    try:
                        peak = max(peak, proc.memory_info().rss)
                    except psutil.Error:
                        pass
                    buf += feed.read()
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        _take(run, json.loads(line), on_prompt)
                    if not alive:
                        break
                    if time.monotonic() > deadline:
                        child.kill()
                        run.error = run.error or f"timed out after {settings.timeout_s:g} s"
                        break
                    time.sleep(poll_s)
            finally:
                if child.is_alive():
                    child.kill()
                child.join()
        code = child.exitcode
        if run.error is None and code != 0:
            log_text = errlog.read_text(encoding="utf-8", errors="replace") if errlog.exists() else ""
            run.error = _crash_reason(code, log_text, peak)
        elif run.error is None and len(run.prompts) < len(prompts):
            run.error = "the model's process stopped before finishing its prompts"
    reported = run.load.get("peak_rss_mb") or 0.0
    run.peak_rss_mb = max(peak / MIB, reported, run.peak_rss_mb or 0.0) or None
    return run


def _take(run: ModelRun, msg: dict[str, Any], on_prompt: Callable[[], None] | None) -> int:
    kind = msg.get("kind")
    if kind == "load":
        run.load.update(msg)
    elif kind == "prompt":
        run.prompts.append(msg)
        if on_prompt:
            on_prompt()
        return 1
    elif kind == "done":
        run.load["peak_rss_mb"] = msg["peak_rss_mb"]
        run.load["gpu_peak_mb"] = msg.get("gpu_peak_mb")
    elif kind == "error":
        run.error = msg["message"]
        run.peak_rss_mb = msg.get("peak_rss_mb")
    return 0


def _crash_reason(code: int, stderr: str, peak_bytes: int) -> str:
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}; peak RSS seen {peak_bytes / MIB:.0f} MB"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"worker exited with status {code}" + (f": {last[-1].strip()[:300]}" if last else "")


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


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    return str(value)


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) for c in COLUMNS])
    return buf.getvalue()


def summary_table(result: BenchResult) -> str:
    """A per-model text table (means over prompts) for the terminal."""
    header = ("model", "status", "load s", "gen s", "ttft s", "tok/s", "diversity", "est MB", "peak MB")
    lines = []
    for model in result.settings.models:
        rows = [r for r in result.rows if r["Model"] == model]
        ok = [r for r in rows if r["Status"] == "ok"]
        mean = (lambda c: statistics.fmean(r[c] for r in ok) if ok and all(r[c] is not None for r in ok) else None)
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
