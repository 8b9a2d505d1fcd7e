"""Charts (PNG, for the README) and a self-contained interactive HTML page (Plotly) for benchmark results.

Every chart shows one bar (group) per model that ran, values averaged over the
prompts; failed models are listed in the HTML table, not drawn. Horizontal bars so
long model names stay readable.
"""

from __future__ import annotations

import html
import statistics
from pathlib import Path
from typing import Any, Sequence

from lts.compare.settings import COLUMNS, BenchSettings
from lts.core.fileio import atomic_path, write_text
from lts.core.tables import fmt_cell

CHARTS = ("benchmark_time.png", "benchmark_diversity.png", "benchmark_memory.png")


def series(settings: BenchSettings) -> dict[str, list[tuple[str, str, str]]]:
    """(column, label, colour) of each chart's bars: one definition for the PNGs and the interactive page."""
    return {
        "time": [("Loading Time (s)", "loading (files → ready model + tokenizer)", "#4C72B0"),
                 ("Generation Time (s)", f"generation of {settings.max_new_tokens} tokens (mean over prompts)",
                  "#DD8452")],
        "diversity": [("Diversity Score", "diversity (unique words / words)", "#55A868"),
                      ("Distinct-2", "distinct-2 (unique bigrams / bigrams)", "#8172B2")],
        "memory": [("Memory Usage (MB)", "estimate: parameters × bytes/parameter", "#4C72B0"),
                   ("Model Memory (MB)", "measured: peak RSS − RSS before loading", "#C44E52"),
                   ("Peak Memory (MB)", "measured: peak RSS of the process (incl. torch)", "#937860")],
    }


def per_model(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean over a model's ok rows of each numeric column, in first-seen model order."""
    out: dict[str, dict[str, float]] = {}
    for model in dict.fromkeys(r["Model"] for r in rows):
        ok = [r for r in rows if r["Model"] == model and r["Status"] == "ok"]
        if not ok:
            continue
        agg = {}
        for col in ("Loading Time (s)", "Generation Time (s)", "Time to First Token (s)", "Tokens/s",
                    "Diversity Score", "Distinct-2", "Memory Usage (MB)", "Peak Memory (MB)", "Model Memory (MB)"):
            values = [r[col] for r in ok if r[col] is not None]
            agg[col] = statistics.fmean(values) if values else 0.0
        out[model] = agg
    return out


def _label(model: str, width: int = 32) -> str:
    return model if len(model) <= width else "…" + model[-(width - 1):]


def _conditions(settings: BenchSettings, rows: Sequence[dict[str, Any]] = ()) -> str:
    used = sorted({r["Threads"] for r in rows if r["Status"] == "ok" and r["Threads"]})
    threads = "/".join(map(str, used)) or settings.threads or "default"
    return (f"{settings.max_new_tokens} new tokens, batch 1, {settings.dtype}, {settings.device}, "
            f"threads {threads}, median of {settings.repeats}, seed {settings.seed}")


def _legend(ax: Any) -> None:
    """Below the axes, so it never hides a bar."""
    axes_height_in = ax.get_position().height * ax.figure.get_figheight()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / axes_height_in), fontsize=8, frameon=False)


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _finish(fig: Any, ax: Any, title: str, path: Path) -> Path:
    """Title, legend and grid of a horizontal-bar chart; save it and free the figure."""
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=10)
    _legend(ax)
    ax.grid(axis="x", alpha=0.3)
    saved = _save(fig, path)
    plt.close(fig)
    return saved


def write_charts(rows: Sequence[dict[str, Any]], out: Path, settings: BenchSettings) -> list[Path]:
    """Three PNGs beside the CSV: time (load + generation stacked), diversity, memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = per_model(rows)
    if not data:
        return []
    models = list(data)
    labels = [_label(m) for m in models]
    y = np.arange(len(models))
    height = max(2.6, 0.55 * len(models) + 1.6)
    conditions = _conditions(settings, rows)
    paths = []

    # 1. time: stacked load + generation
    bars = series(settings)
    (load_col, load_label, load_colour), (gen_col, gen_label, gen_colour) = bars["time"]
    load = np.array([data[m][load_col] for m in models])
    gen = np.array([data[m][gen_col] for m in models])
    fig, ax = plt.subplots(figsize=(8, height))
    ax.barh(y, load, color=load_colour, label=load_label)
    ax.barh(y, gen, left=load, color=gen_colour, label=gen_label)
    for yi, total in zip(y, load + gen):
        ax.text(total, yi, f" {total:.3g} s", va="center", fontsize=9)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_xlim(0, max(load + gen) * 1.25 or 1)
    paths.append(_finish(fig, ax, f"Loading + generation time per model\n{conditions}", out / CHARTS[0]))

    # 2. diversity
    w = 0.38
    def grouped(ax: Any, specs: list[tuple[str, str, str]], w: float, fmt: str) -> np.ndarray:
        """Bars of `specs` side by side around each model's row, each labelled with its value; all values."""
        offsets = (np.arange(len(specs)) - (len(specs) - 1) / 2) * w
        columns = [np.array([data[m][col] for m in models]) for col, _, _ in specs]
        for off, values, (_, label, colour) in zip(offsets, columns, specs):
            ax.barh(y + off, values, w, color=colour, label=label)
            for yi, v in zip(y, values):
                ax.text(v, yi + off, f" {v:{fmt}}", va="center", fontsize=8)
        return np.concatenate(columns)

    fig, ax = plt.subplots(figsize=(8, height))
    grouped(ax, bars["diversity"], w, ".2f")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("ratio (0 = repetitive, 1 = no word repeated), mean over prompts")
    paths.append(_finish(fig, ax, f"Diversity of the generated text\n{conditions}", out / CHARTS[1]))

    # 3. memory: estimate vs measured
    w = 0.27
    fig, ax = plt.subplots(figsize=(8, height + 0.4))
    values = grouped(ax, bars["memory"], w, ".3g")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > 50:  # tiny models beside torch's own memory
        ax.set_xscale("log")
        ax.set_xlim(positive.min() / 2, positive.max() * 4)
        ax.set_xlabel("MiB (2**20 bytes), log scale")
    else:
        ax.set_xlim(0, (values.max() * 1.2) or 1)
        ax.set_xlabel("MiB (2**20 bytes)")
    paths.append(_finish(fig, ax, f"Memory per model: estimate vs measured\n{conditions}", out / CHARTS[2]))
    return paths


def interactive_charts(rows: Sequence[dict[str, Any]], settings: BenchSettings) -> list[Any]:
    """The three charts as Plotly figures (hover for values; the same data as the PNGs)."""
    import plotly.graph_objects as go

    data = per_model(rows)
    if not data:
        return []
    models = list(data)
    conditions = _conditions(settings, rows)
    height = max(300, 60 * len(models) + 160)

    def bars(traces: Sequence[tuple[str, str, str]], title: str, xaxis: str, stack: bool = False) -> Any:
        fig = go.Figure()
        for col, name, color in traces:
            fig.add_trace(go.Bar(y=models, x=[data[m][col] for m in models], name=name, orientation="h",
                                 marker_color=color, hovertemplate="%{y}<br>" + name + ": %{x:.4g}<extra></extra>"))
        fig.update_layout(title=f"{title}<br><sup>{html.escape(conditions)}</sup>", barmode="stack" if stack
                          else "group", height=height, xaxis_title=xaxis, yaxis={"autorange": "reversed"},
                          legend={"orientation": "h", "y": -0.25}, margin={"l": 220})
        return fig

    specs = series(settings)
    return [
        bars(specs["time"], "Loading + generation time per model", "seconds", stack=True),
        bars(specs["diversity"], "Diversity of the generated text", "ratio (0 = repetitive, 1 = no word repeated)"),
        bars(specs["memory"], "Memory per model: estimate vs measured", "MiB (2**20 bytes)"),
    ]


def write_html(rows: Sequence[dict[str, Any]], path: Path, settings: BenchSettings) -> Path:
    """One self-contained page: interactive Plotly charts (plotly.js inlined) and the results table."""
    from plotly.offline import get_plotlyjs

    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = []
    for r in rows:
        cls = "" if r["Status"] == "ok" else ' class="failed"'
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(fmt_cell(r.get(c)))}</td>" for c in COLUMNS) + "</tr>")
    charts = "".join(f'<div class="chart">{fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart{k}")}'
                     "</div>" for k, fig in enumerate(interactive_charts(rows, settings)))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>LTS benchmark</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; }}
th {{ background: #f3f3f3; position: sticky; top: 0; }}
tr.failed td {{ background: #fdecea; }}
td:nth-child(4) {{ max-width: 28em; }}
</style></head><body>
<h1>Language model benchmark</h1>
<p>Conditions: {esc(_conditions(settings, rows))}. Times in seconds, memory in MiB.
Loading = files to ready model + tokenizer; generation = one <code>generate</code> of exactly
{settings.max_new_tokens} new tokens after a warm-up; diversity = unique words / words of the continuation;
memory estimate = parameters × bytes per parameter, peak = measured peak RSS of the process running the model.</p>
{charts}
<div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table></div>
</body></html>
"""
    write_text(path, page)
    return path
