"""Outputs of a search: CSVs, the models/ front, Pareto plots and a markdown gallery.

Every file is written atomically (temp + rename); a model folder is built beside its final
place and renamed into it, so readers never see half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from lts.core import fileio
from lts.core.arch import ArchConfig
from lts.cost.evaluator import EvalResult
from lts.cost.objectives import REGISTRY
from lts.cost.objectives import get as get_objective

FRONT_MARKER = "lts_search_front"

__all__ = ["evaluation_rows", "write_models", "plot_fronts", "gallery_markdown", "FRONT_MARKER"]


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
        if old.is_dir() and not old.name.startswith(".") and old.name not in keep and metrics.is_file():
            try:
                if json.loads(metrics.read_text()).get(FRONT_MARKER):
                    shutil.rmtree(old)
            except (OSError, json.JSONDecodeError):
                pass
    out = []
    for r in front:
        final = models_dir / r.archid
        metrics = fileio.nan_to_none({"archid": r.archid, **r.objectives(), "conditions": conditions,
                                      FRONT_MARKER: True})
        if not _same_arch(final, r.archid):
            with fileio.atomic_dir(final, replace=True) as tmp:
                r.config.to_gpt2_config().save_pretrained(tmp)
                fileio.write_json(tmp / "metrics.json", metrics)
                assert ArchConfig.load(tmp).archid == r.archid, "saving must never change an archid"
        fileio.write_json(final / "metrics.json", metrics)  # atomic; config.json is already right
        out.append(final)
    return out


def _same_arch(folder: Path, archid: str) -> bool:
    try:
        return ArchConfig.load(folder).archid == archid
    except Exception:
        return False


def _short(name: str) -> str:
    for suffix in ("_s", "_mb"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _plot_value(name: str, value: float) -> float:
    return value * get_objective(name).scale


def plot_fronts(results: Sequence[EvalResult], front: Sequence[EvalResult], objectives: Sequence[str],
                assets_dir: Path, conditions: dict[str, Any]) -> list[Path]:
    """First objective against each other one: all candidates grey, the front highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.ok]
    front_ids = {r.archid for r in front}
    x_name = objectives[0]
    cond = f"batch 1, seq_len {conditions.get('seq_len')}, {conditions.get('describe', '')}"
    paths = []
    for y_name in objectives[1:]:
        fig, ax = plt.subplots(figsize=(7.5, 5))
        xs = [_plot_value(x_name, r[x_name]) for r in ok]
        ys = [_plot_value(y_name, r[y_name]) for r in ok]
        ax.scatter(xs, ys, s=14, c="lightgrey", edgecolors="grey", linewidths=0.3,
                   label=f"all candidates ({len(ok)})")
        fx = [_plot_value(x_name, r[x_name]) for r in ok if r.archid in front_ids]
        fy = [_plot_value(y_name, r[y_name]) for r in ok if r.archid in front_ids]
        ax.scatter(fx, fy, s=36, c="tab:red", edgecolors="black", linewidths=0.5, zorder=3,
                   label=f"Pareto front, all objectives ({len(fx)})")
        ax.set_xlabel(get_objective(x_name).axis_label)
        ax.set_ylabel(get_objective(y_name).axis_label)
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
    """The front as a markdown table, smallest model first; one column per registered gallery objective."""
    shown = [o for o in REGISTRY.values() if o.gallery]
    header = ["archid", *(o.header for o in shown), "n_layer", "n_embd", "n_inner", "n_head"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for r in sorted(front, key=lambda r: r["non_embedding_params"]):
        c = r.config
        cells = [f"`{r.archid}`", *(o.display(r[o.name]) for o in shown), c.n_layer, c.n_embd, c.n_inner, c.n_head]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"
