"""Outputs of a search: CSVs, the models/ front, Pareto plots and a markdown gallery.

Every file is written atomically (temp + rename); a model folder is built beside its final
place and renamed into it, so readers never see half of one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from lts import fileio
from lts.evaluate import OBJECTIVES, EvalResult
from lts.space import ArchConfig

FRONT_MARKER = "lts_search_front"


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in keys})
    fileio.write_text(path, buf.getvalue())


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def evaluation_rows(log_rows: Sequence[dict[str, Any]], results: Sequence[EvalResult]) -> list[dict[str, Any]]:
    """One row per candidate: generation, archid, genes, config, every objective, status."""
    rows = []
    for meta, r in zip(log_rows, results):
        row = {"generation": meta["generation"], "archid": r.archid, "genes": meta.get("genes", "")}
        row.update(r.to_row())
        rows.append(row)
    return rows


def write_models(front: Sequence[EvalResult], models_dir: Path, conditions: dict[str, Any]) -> list[Path]:
    """models/<archid>/{config.json, metrics.json}; stale front folders of earlier searches are removed."""
    models_dir.mkdir(parents=True, exist_ok=True)
    keep = {r.archid for r in front}
    for old in models_dir.iterdir():
        metrics = old / "metrics.json"
        if old.is_dir() and old.name not in keep and metrics.is_file():
            try:
                if json.loads(metrics.read_text()).get(FRONT_MARKER):
                    shutil.rmtree(old)
            except (OSError, json.JSONDecodeError):
                pass
    out = []
    for r in front:
        final = models_dir / r.archid
        metrics = _jsonable({"archid": r.archid, **r.objectives(), "total_params": r.total_params,
                             "onnx_memory_sampled_mb": r.onnx_memory_sampled_mb, "conditions": conditions,
                             FRONT_MARKER: True})
        if not _same_arch(final, r.archid):
            with tempfile.TemporaryDirectory(prefix=f".{r.archid}.", dir=models_dir) as tmp:
                r.config.to_gpt2_config().save_pretrained(tmp)
                fileio.write_json(Path(tmp) / "metrics.json", metrics)
                assert ArchConfig.load(tmp).archid == r.archid, "saving must never change an archid"
                if final.exists():
                    shutil.rmtree(final, ignore_errors=True)
                try:
                    Path(tmp).rename(final)
                    Path(tmp).mkdir()  # so TemporaryDirectory's cleanup finds what it expects
                except OSError:  # another search wrote the same archid just now: same config, keep it
                    if not _same_arch(final, r.archid):
                        raise
        fileio.write_json(final / "metrics.json", metrics)  # atomic; config.json is already right
        out.append(final)
    return out


def _same_arch(folder: Path, archid: str) -> bool:
    try:
        return ArchConfig.load(folder).archid == archid
    except Exception:
        return False


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _short(name: str) -> str:
    for suffix in ("_s", "_mb"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _label(name: str) -> str:
    labels = {"non_embedding_params": "non-embedding parameters (millions)",
              "onnx_latency_s": "ONNX Runtime latency (ms)", "onnx_memory_mb": "ONNX Runtime peak memory (MiB)",
              "onnx_file_mb": "ONNX file size (MiB)"}
    return labels.get(name, f"{name} ({OBJECTIVES.get(name, ('', 1))[0]})")


def _scale(name: str, v: float) -> float:
    return v / 1e6 if name == "non_embedding_params" else v * 1e3 if name == "onnx_latency_s" else v


def plot_fronts(results: Sequence[EvalResult], front: Sequence[EvalResult], objectives: Sequence[str],
                assets_dir: Path, conditions: dict[str, Any]) -> list[Path]:
    """First objective against each other one: all candidates grey, the front highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.ok]
    front_ids = {r.archid for r in front}
    x_name = objectives[0]
    hw = conditions.get("hardware", {})
    cond = (f"batch 1, seq_len {conditions.get('seq_len')}, {conditions.get('threads')} ORT threads, "
            f"{hw.get('cores', '?')} cores, {hw.get('cpu', '')}")
    paths = []
    for y_name in objectives[1:]:
        fig, ax = plt.subplots(figsize=(7.5, 5))
        xs = [_scale(x_name, getattr(r, x_name)) for r in ok]
        ys = [_scale(y_name, getattr(r, y_name)) for r in ok]
        ax.scatter(xs, ys, s=14, c="lightgrey", edgecolors="grey", linewidths=0.3,
                   label=f"all candidates ({len(ok)})")
        fx = [_scale(x_name, getattr(r, x_name)) for r in ok if r.archid in front_ids]
        fy = [_scale(y_name, getattr(r, y_name)) for r in ok if r.archid in front_ids]
        ax.scatter(fx, fy, s=36, c="tab:red", edgecolors="black", linewidths=0.5, zorder=3,
                   label=f"Pareto front, all objectives ({len(fx)})")
        ax.set_xlabel(_label(x_name))
        ax.set_ylabel(_label(y_name))
        ax.set_title(f"{_short(x_name)} vs {_short(y_name)}", fontsize=11)
        fig.text(0.5, 0.005, cond, ha="center", va="bottom", fontsize=7, color="dimgrey")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = assets_dir / f"pareto_{_short(x_name)}_vs_{_short(y_name)}.png"
        assets_dir.mkdir(parents=True, exist_ok=True)
        with fileio.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
        paths.append(path)
    return paths


def gallery_markdown(front: Sequence[EvalResult]) -> str:
    """The front as a markdown table, smallest model first."""
    lines = ["| archid | non-embedding params | latency (ms) | CV | memory (MiB) | file (MiB) | "
             "n_layer | n_embd | n_inner | n_head |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(front, key=lambda r: r.non_embedding_params):
        c = r.config
        lat = "" if math.isnan(r.onnx_latency_s) else f"{r.onnx_latency_s * 1e3:.1f}"
        cv = "" if math.isnan(r.onnx_latency_cv) else f"{r.onnx_latency_cv:.3f}"
        mem = "" if math.isnan(r.onnx_memory_mb) else f"{r.onnx_memory_mb:.1f}"
        lines.append(f"| `{r.archid}` | {r.non_embedding_params:,} | {lat} | {cv} | {mem} | {r.onnx_file_mb:.1f} | "
                     f"{c.n_layer} | {c.n_embd} | {c.n_inner} | {c.n_head} |")
    return "\n".join(lines) + "\n"

