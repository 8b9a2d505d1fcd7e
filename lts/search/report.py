"""Outputs of a search: CSVs, the models/ front, Pareto plots and a markdown gallery.

Every file is written atomically (temp + rename); a model folder is built beside its final
place and renamed into it, so readers never see half of one.

The front in ``models/`` changes as a whole, under a lock on the folder: first every new
member folder is written, then the manifest (``front.json``, and ``README.md`` with the
gallery) is swapped in by one rename each, and only then are the members it replaced removed.
A run removes only members of the front it found when it started (or its own, from an earlier
attempt of the same run): members that another search placed meanwhile stay, and a folder
holding anything besides the files a search writes (say, trained weights) is never deleted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from lts.core import faults, fileio
from lts.core.locks import file_lock
from lts.cost.evaluator import EvalResult
from lts.cost.objectives import REGISTRY
from lts.cost.objectives import get as get_objective
from lts.families import load_arch

FRONT_MARKER = "lts_search_front"
MANIFEST = "front.json"
LOCK = ".lts-front.lock"
MEMBER_FILES = {"config.json", "metrics.json"}  # all a search writes into a member folder

__all__ = ["evaluation_rows", "write_models", "read_manifest", "plot_fronts", "gallery_markdown", "FRONT_MARKER",
           "MANIFEST"]


def evaluation_rows(log_rows: Sequence[dict[str, Any]], results: Sequence[EvalResult],
                    front: set[str] | None = None, robust: set[str] | None = None) -> list[dict[str, Any]]:
    """One row per candidate: generation, archid, genes, config, every objective, status, front membership."""
    rows = []
    for meta, r in zip(log_rows, results):
        row = {"generation": meta["generation"], "archid": r.archid, "genes": meta.get("genes", "")}
        row.update(r.to_row())
        if front is not None:
            row["front"] = r.archid in front
            row["robust"] = r.archid in (robust or set())
        rows.append(row)
    return rows


def read_manifest(models_dir: Path) -> dict[str, str]:
    """The front now in `models_dir`: archid -> the run that placed it (folders of older versions: "legacy")."""
    try:
        return dict(json.loads((models_dir / MANIFEST).read_text())["members"])
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: the markers in the folders
        return _marked_members(models_dir)


def _marked_members(models_dir: Path) -> dict[str, str]:
    """Folders a search wrote (marked in their metrics.json): archid -> run ("legacy" when unrecorded)."""
    out = {}
    if not models_dir.is_dir():
        return out
    for folder in models_dir.iterdir():
        metrics = folder / "metrics.json"
        if folder.name.startswith(".") or not metrics.is_file():
            continue
        try:
            d = json.loads(metrics.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get(FRONT_MARKER):
            out[folder.name] = str(d.get("run") or "legacy")
    return out


def write_models(front: Sequence[EvalResult], models_dir: Path, conditions: dict[str, Any], run_id: str,
                 started: dict[str, str], robust: set[str], readme: Callable[[dict[str, str]], str],
                 composed: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Swap `front` into models/<archid>/{config.json, metrics.json} as a whole (see the module docstring).

    `started` is :func:`read_manifest` as this run found it when it started; `readme(members)`
    renders models/README.md for the new manifest. `composed`: per member timed whole, the figures the
    search had composed (metrics.json keeps them beside the whole ones).
    """
    composed = composed or {}
    models_dir.mkdir(parents=True, exist_ok=True)
    faults.point("front")  # before the lock: the tests hold concurrent runs here so that both truly overlap
    ours = {r.archid for r in front}
    out = []
    with file_lock(models_dir / LOCK, exclusive=True):
        current = read_manifest(models_dir)
        others = {a: run for a, run in current.items() if a not in ours and started.get(a) != run}
        for r in front:
            final = models_dir / r.archid
            metrics = fileio.nan_to_none({"archid": r.archid, **r.objectives(), "robust": r.archid in robust,
                                          **({"composed": composed[r.archid]} if r.archid in composed else {}),
                                          "conditions": conditions, "run": run_id, FRONT_MARKER: True})
            if not _same_arch(final, r.archid):
                with fileio.atomic_dir(final, replace=True) as tmp:
                    r.config.to_hf_config().save_pretrained(tmp)
                    fileio.write_json(tmp / "metrics.json", metrics)
                    assert load_arch(tmp).archid == r.archid, "saving must never change an archid"
            fileio.write_json(final / "metrics.json", metrics)  # atomic; config.json is already right
            faults.point("models", r.archid)
            out.append(final)
        members = {**others, **{a: run_id for a in ours}}
        fileio.write_json(models_dir / MANIFEST, {"members": members, "run": run_id, "conditions": conditions})
        fileio.write_text(models_dir / "README.md", readme(members))
        replaced = set(started.values()) | {run_id, "legacy"}
        for archid, run in _marked_members(models_dir).items():
            folder = models_dir / archid
            if archid not in members and run in replaced and {p.name for p in folder.iterdir()} <= MEMBER_FILES:
                shutil.rmtree(folder, ignore_errors=True)
    return out




def arch_fields(results: Sequence[EvalResult]) -> list[str]:
    """The architecture columns of `results`: their family's ``columns()`` (GPT-2's n_layer, n_embd, ...)."""
    return list(dict.fromkeys(k for r in results for k in r.config.columns()))


def _same_arch(folder: Path, archid: str) -> bool:
    try:
        return load_arch(folder).archid == archid
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
                assets_dir: Path, conditions: dict[str, Any], robust: set[str] | None = None) -> list[Path]:
    """First objective against each other one: all candidates grey, the front highlighted.

    Robust members (non-dominated even when differences within noise are ties) are filled red;
    members whose place on the front is within noise are hollow. Measured values get error bars
    of their noise.
    """
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
        robust_ids = front_ids if robust is None else robust
        for members, style, label in (
                ([r for r in ok if r.archid in robust_ids], {"c": "tab:red"}, "Pareto front, robust to noise"),
                ([r for r in ok if r.archid in front_ids - robust_ids], {"facecolors": "none", "c": None},
                 "Pareto front, within noise")):
            if not members:
                continue
            fx = [_plot_value(x_name, r[x_name]) for r in members]
            fy = [_plot_value(y_name, r[y_name]) for r in members]
            ax.errorbar(fx, fy, xerr=[_plot_value(x_name, r.tolerance(x_name)) for r in members],
                        yerr=[_plot_value(y_name, r.tolerance(y_name)) for r in members], fmt="none",
                        ecolor="tab:red", elinewidth=0.6, alpha=0.6, zorder=2)
            style = {k: v for k, v in style.items() if v is not None}
            ax.scatter(fx, fy, s=36, edgecolors="tab:red" if "facecolors" in style else "black", linewidths=0.8,
                       zorder=3, label=f"{label} ({len(fx)})", **style)
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


def gallery_markdown(front: Sequence[EvalResult], robust: set[str] | None = None) -> str:
    """The front as a markdown table, smallest model first; a column per gallery objective the run obtained.

    With `robust`, a column says whether each member stays on the front when differences within
    measured noise are ties ("yes"), or owes its place to differences within noise ("noise").
    """
    shown = [o for o in REGISTRY.values() if o.gallery and any(o.display(r[o.name]) for r in front)]  # measured ones
    fields = arch_fields(front)
    header = ["archid", *(["robust"] if robust is not None else []), *(o.header for o in shown), *fields]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for r in sorted(front, key=lambda r: r["non_embedding_params"]):
        c = r.config
        flag = ["yes" if r.archid in robust else "noise"] if robust is not None else []
        cells = [f"`{r.archid}`", *flag, *(o.display(r[o.name]) for o in shown),
                 *(c.columns().get(f, "") for f in fields)]  # per layer: 512x2,768
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"
