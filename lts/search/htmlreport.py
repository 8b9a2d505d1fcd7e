"""``RUN_DIR/report.html``: one self-contained interactive page of a search (``python -m lts report RUN_DIR``).

Read from the run folder alone (``job.json``, ``evaluations.jsonl``, ``calibration.json`` and,
when the run finished, ``run.json``), so a killed run's folder makes a report too. Drawn with
Plotly (its JavaScript inlined: the page opens with no network); the only hand-written
JavaScript is glue: budget inputs that grey out what breaks them, and click-to-sort tables.

On the page: a scatter for each pair of objectives (and a 3-D view for three), every successful
candidate with the front highlighted and the robust members filled, hover with the architecture
and every objective in its unit; budget inputs; hypervolume and front size per generation, on
one fixed scale (objectives normalised over the whole run, reference point 1.1, so generations
compare), and evaluation time per generation; the front as a sortable table linking each
``models/<archid>/config.json``; the failed candidates with their reasons; and the conditions
(seq_len, context, threads, target, hardware fingerprint, library versions, seed, command, wall
time). Written to a temp file and renamed: never half-written.
"""

from __future__ import annotations

import html
import json
import math
import os
import statistics
from pathlib import Path
from typing import Any, Sequence

from lts.core import fileio
from lts.core.errors import LTSError
from lts.cost.evaluator import EvalResult
from lts.cost.objectives import get as get_objective
from lts.search.constraints import parse_constraints
from lts.search.fronts import hypervolume, pareto_front, robust_front
from lts.search.record import CALIBRATION, RunRecord
from lts.search.report import arch_fields
from lts.search.verify import read_verified, whole_front

REPORT = "report.html"
RUN_INFO = "run.json"  # command line, wall time, library versions: written by a search when it ends


def _read_json(path: Path, what: str, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise LTSError(f"not a run folder: {path} is missing ({what})")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LTSError(f"{path} is corrupt ({what}): {exc}") from None
    if not isinstance(data, dict):
        raise LTSError(f"{path} is corrupt ({what}): not a JSON object")
    return data


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[tuple[int, EvalResult]], dict[str, Any], dict[str, Any]]:
    """(job settings, [(generation, result)] in order, calibration record, run info); LTSError when unreadable."""
    if not run_dir.is_dir():
        raise LTSError(f"run folder not found: {run_dir}")
    job = _read_json(run_dir / "job.json", "the search's settings")
    if not isinstance(job.get("objectives"), str):
        raise LTSError(f"{run_dir / 'job.json'} is corrupt: no objectives")
    record = RunRecord(run_dir)
    if not record.path.is_file():
        raise LTSError(f"not a run folder: {record.path} is missing (the record of its evaluations)")
    by_id: dict[str, tuple[int, EvalResult]] = {}
    for generation, result in record.read(strict=True):
        by_id[result.archid] = (generation, result)  # a candidate tried again (after a failure): its last result
    if not by_id:
        raise LTSError(f"{record.path} holds no evaluation")
    return job, list(by_id.values()), _read_json(run_dir / CALIBRATION, "calibration", required=False), \
        _read_json(run_dir / RUN_INFO, "run info", required=False)


def _display(name: str, value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value) * get_objective(name).scale


def _unit(name: str) -> str:
    o = get_objective(name)
    return o.display_unit or o.unit


def write_report(run_dir: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> Path:
    """Write ``run_dir/report.html`` from the run folder; returns its path."""
    import plotly
    from plotly.offline import get_plotlyjs

    run_dir = Path(run_dir)
    job, entries, calibration, info = load_run(run_dir)
    objectives, constraints = _objectives_and_budgets(job, run_dir)
    # the front as written to models/: its members' whole figures (lts.search.verify), the rest as composed
    results, front = whole_front([r for _, r in entries], read_verified(run_dir), objectives, constraints)
    entries = [(g, r) for (g, _), r in zip(entries, results)]
    ok = [r for r in results if r.ok]
    robust = robust_front(front, objectives)
    models = Path(models_dir if models_dir is not None else job.get("models_dir") or "models")
    shown = list(dict.fromkeys([*objectives, *(c.name for c in constraints)]))  # in hover and budget inputs
    scatters = _scatters(objectives, shown, results, front, robust)
    convergence, hv = _convergence(entries, results, objectives, constraints)
    page = _PAGE.format(
        title=html.escape(f"LTS search report: {run_dir.name}"),
        plotlyjs=get_plotlyjs(),
        summary=_summary(job, results, ok, front, robust, hv[-1] if hv else 0.0, constraints),
        budgets=_budget_inputs(shown, 1 + len(arch_fields(results))),
        plots=_divs(scatters, 0),
        convergence=_divs(convergence, len(scatters)),
        front_table=_front_table(front, robust, objectives, models, run_dir),
        failed_table=_failed_table([r for r in results if not r.ok]),
        conditions=_conditions(job, calibration, info, plotly.__version__),
        glue=_GLUE,
    )
    out = run_dir / REPORT
    fileio.write_text(out, page)
    return out


def _objectives_and_budgets(job: dict[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
    """The run's objectives and budgets from its job.json; LTSError naming the file when one is unknown."""
    objectives = [o.strip() for o in job["objectives"].split(",")]
    try:
        constraints = parse_constraints(job.get("constraints") or [])
        for name in objectives:
            get_objective(name)
    except LTSError as exc:
        raise LTSError(f"{run_dir / 'job.json'} is corrupt: {exc}") from None
    return objectives, constraints


def _scatters(objectives: Sequence[str], shown: Sequence[str], results: Sequence[EvalResult],
              front: Sequence[EvalResult], robust: set[str]) -> list[tuple[str, Any]]:
    """A scatter for every pair of objectives (and a 3-D view for three): the candidates, the front within noise
    and the robust front, each point's hover naming its architecture and every figure in `shown`."""
    import plotly.graph_objects as go

    ok = [r for r in results if r.ok]
    front_ids = {r.archid for r in front}
    fields = arch_fields(results)
    groups = [
        ("candidates", [r for r in ok if r.archid not in front_ids], {"color": "rgba(150,150,150,0.9)", "size": 6}),
        ("front, within noise", [r for r in ok if r.archid in front_ids - robust],
         {"color": "rgba(0,0,0,0)", "size": 9, "line": {"color": "crimson", "width": 2}}),
        ("front, robust to noise", [r for r in ok if r.archid in robust],
         {"color": "crimson", "size": 9, "line": {"color": "darkred", "width": 1}}),
    ]

    def hover(rs: Sequence[EvalResult]) -> tuple[list[list[Any]], str]:
        custom = [[r.archid, *(r.config.columns().get(f, "") for f in fields),
                   *(_display(n, r[n]) for n in shown)] for r in rs]
        lines = ["<b>%{customdata[0]}</b>", ", ".join(f"{f} %{{customdata[{1 + k}]}}" for k, f in enumerate(fields))]
        for k, n in enumerate(shown):
            fmt = ",.0f" if get_objective(n).integer else ".4g"
            lines.append(f"{get_objective(n).label}: %{{customdata[{1 + len(fields) + k}]:{fmt}}} {_unit(n)}")
        return custom, "<br>".join(lines) + "<extra></extra>"

    figures: list[tuple[str, Any]] = []
    for i, x in enumerate(objectives):
        for y in objectives[i + 1:]:
            fig = go.Figure()
            for label, rs, marker in groups:
                custom, template = hover(rs)
                fig.add_trace(go.Scatter(x=[_display(x, r[x]) for r in rs], y=[_display(y, r[y]) for r in rs],
                                         mode="markers", name=f"{label} ({len(rs)})", marker=marker,
                                         customdata=custom, hovertemplate=template))
            fig.update_layout(title=f"{get_objective(y).label} vs {get_objective(x).label}",
                              xaxis_title=get_objective(x).axis_label, yaxis_title=get_objective(y).axis_label,
                              height=480, margin={"t": 50, "b": 50, "l": 60, "r": 20}, legend={"orientation": "h"})
            figures.append(("scatter", fig))
    if len(objectives) == 3:
        x, y, z = objectives
        fig = go.Figure()
        for label, rs, marker in groups:
            custom, template = hover(rs)
            fig.add_trace(go.Scatter3d(x=[_display(x, r[x]) for r in rs], y=[_display(y, r[y]) for r in rs],
                                       z=[_display(z, r[z]) for r in rs], mode="markers",
                                       name=f"{label} ({len(rs)})", customdata=custom, hovertemplate=template,
                                       marker={**marker, "size": marker["size"] * 0.6}))
        scene = {"xaxis_title": get_objective(x).axis_label, "yaxis_title": get_objective(y).axis_label,
                 "zaxis_title": get_objective(z).axis_label, "aspectmode": "cube"}
        fig.update_layout(title="all three objectives (drag to turn)", height=620, scene=scene,
                          margin={"t": 50, "b": 10, "l": 10, "r": 10}, legend={"orientation": "h"})
        figures.append(("scatter3d", fig))
    return figures


def _convergence(entries: Sequence[tuple[int, EvalResult]], results: Sequence[EvalResult],
                 objectives: Sequence[str], constraints: Sequence[Any]) -> tuple[list[tuple[str, Any]], list[float]]:
    """(the convergence and evaluation-time figures, the hypervolume after each generation): on one scale,
    objectives normalised over the whole run, reference point 1.1, so generations compare."""
    import plotly.graph_objects as go

    gens = sorted({g for g, _ in entries})
    hv, size, secs, med = [], [], [], []
    for g in gens:
        upto = [r for gg, r in entries if gg <= g]
        f = pareto_front(upto, objectives, constraints)
        hv.append(hypervolume(f, results, objectives))
        size.append(len(f))
        mine = [r.eval_seconds for gg, r in entries if gg == g and not r.cached]
        secs.append(sum(mine))
        med.append(statistics.median(mine) if mine else 0.0)
    labels = [g + 1 for g in gens]
    conv = go.Figure()
    conv.add_trace(go.Scatter(x=labels, y=hv, mode="lines+markers", name="hypervolume", yaxis="y"))
    conv.add_trace(go.Bar(x=labels, y=size, name="front size", yaxis="y2", opacity=0.35))
    conv.update_layout(title="convergence: hypervolume (objectives scaled over the whole run, ref 1.1) and front "
                             "size after each generation", xaxis_title="generation", height=380,
                       yaxis={"title": "hypervolume"}, yaxis2={"title": "front size", "overlaying": "y",
                                                               "side": "right"}, legend={"orientation": "h"})
    times = go.Figure()
    times.add_trace(go.Bar(x=labels, y=secs, name="evaluation time, sum (s)"))
    times.add_trace(go.Scatter(x=labels, y=med, name="median per evaluation (s)", yaxis="y2", mode="lines+markers"))
    times.update_layout(title="evaluation time per generation (cached results excluded)", xaxis_title="generation",
                        height=340, yaxis={"title": "s (sum)"}, yaxis2={"title": "s (median)", "overlaying": "y",
                                                                        "side": "right"}, legend={"orientation": "h"})
    return [("convergence", conv), ("times", times)], hv


def _divs(figures: Sequence[tuple[str, Any]], first: int) -> str:
    """The figures as divs (ids fig<first>, fig<first + 1>, ...: one numbering over the page)."""
    return "\n".join(
        f'<div class="plot {kind}">' + fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig{first + k}",
                                                   config={"displaylogo": False, "responsive": True}) + "</div>"
        for k, (kind, fig) in enumerate(figures))


def _budget_inputs(shown: Sequence[str], first: int) -> str:
    """One input per figure of `shown`, which the points' hover data holds from column `first` on (after the
    archid and the architecture's fields): the glue greys out the points beyond it."""
    return "".join(
        f'<label>{html.escape(get_objective(n).label)} {"≤" if get_objective(n).direction > 0 else "≥"} '
        f'<input type="number" step="any" class="budget" data-index="{first + k}" '
        f'data-direction="{get_objective(n).direction}" id="budget-{n}" placeholder="{html.escape(_unit(n))}"></label>'
        for k, n in enumerate(shown))


def _summary(job: dict, results: list, ok: list, front: list, robust: set, hv: float, constraints: list) -> str:
    failed = len(results) - len(ok)
    budgets = f"; budgets {html.escape(', '.join(map(str, constraints)))}" if constraints else ""
    return (f"<p>{len(results)} candidates evaluated ({len(ok)} succeeded, {failed} failed) over "
            f"{job.get('generations')} generations of {job.get('population')}; objectives "
            f"<code>{html.escape(job['objectives'])}</code>{budgets}. Pareto front: <b>{len(front)}</b> members, "
            f"<b>{len(robust)}</b> robust to noise; hypervolume {hv:.4f}.</p>")


def _front_table(front: Sequence[EvalResult], robust: set, objectives: Sequence[str], models: Path,
                 run_dir: Path) -> str:
    fields = arch_fields(front)
    head = ["archid", *fields, *(get_objective(n).header for n in objectives), "robust", "config"]
    rows = []
    for r in front:
        config = models / r.archid / "config.json"
        link = os.path.relpath(config.resolve(), run_dir.resolve()) if config.is_file() else None
        cells = [html.escape(r.archid), *(html.escape(r.config.columns().get(f, "")) for f in fields),
                 *(get_objective(n).display(r[n]) for n in objectives), "yes" if r.archid in robust else "noise",
                 f'<a href="{html.escape(Path(link).as_posix())}">config.json</a>' if link else "(not in models/)"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return _table("front", head, rows)


def _failed_table(failed: Sequence[EvalResult]) -> str:
    if not failed:
        return "<p>No candidate failed.</p>"
    fields = arch_fields(failed)
    rows = ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
        r.archid, *(r.config.columns().get(f, "") for f in fields), r.status.removeprefix("failed: "))) + "</tr>"
        for r in failed]
    return _table("failed", ["archid", *fields, "reason"], rows)


def _table(name: str, head: Sequence[str], rows: Sequence[str]) -> str:
    ths = "".join(f'<th title="click to sort">{html.escape(h)}</th>' for h in head)
    return f'<table class="sortable" id="table-{name}"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}' \
           "</tbody></table>"


def _conditions(job: dict, calibration: dict, info: dict, plotly_version: str) -> str:
    hw = calibration.get("hardware") or {}
    versions = dict(info.get("versions") or {})
    versions.setdefault("plotly (this page)", plotly_version)
    cal = calibration.get("calibration_s")
    items = [
        ("seq_len", job.get("seq_len")), ("context (generation objectives)", job.get("context")),
        ("threads", job.get("threads") or "the target's default"), ("target", calibration.get("target")
                                                                    or job.get("target")),
        ("hardware fingerprint", f"{hw.get('id')}: {hw.get('cpu') or hw.get('machine')}, {hw.get('cores')} cores, "
                                 f"{hw.get('system')}, onnxruntime {hw.get('onnxruntime')}" if hw else "not recorded"),
        ("calibration (reference graph)", f"{cal * 1e3:.3f} ms" if isinstance(cal, (int, float)) else "none"),
        ("latency mode", job.get("latency_mode")), ("engine", info.get("engine") or job.get("engine")),
        ("seed", job.get("seed")), ("population x generations", f"{job.get('population')} x {job.get('generations')}"),
        ("command", info.get("command") or "not recorded (the run did not finish)"),
        ("wall time", f"{info['wall_s']:.1f} s" if isinstance(info.get("wall_s"), (int, float)) else "not recorded"),
        ("finished", info.get("finished") or "not recorded"),
        ("libraries", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))),
    ]
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd><code>{html.escape(str(v))}</code></dd>"
                            for k, v in items) + "</dl>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<script type="text/javascript">{plotlyjs}</script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }}
.budgets label {{ margin-right: 1.2em; white-space: nowrap; }} .budgets input {{ width: 8em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} td, th {{ border: 1px solid #ddd; padding: 2px 6px; }}
th {{ cursor: pointer; background: #f4f4f4; }} tbody tr:nth-child(even) {{ background: #fafafa; }}
dt {{ font-weight: bold; }} dd {{ margin: 0 0 0.4em 1em; }}
</style></head><body>
<h1>{title}</h1>
{summary}
<h2>Objectives</h2>
<div class="budgets">Budgets (grey out what breaks them): {budgets}
<span id="budget-count"></span></div>
{plots}
<h2>Convergence</h2>
{convergence}
<h2>The front</h2>
{front_table}
<h2>Failed candidates</h2>
{failed_table}
<h2>Conditions</h2>
{conditions}
<script type="text/javascript">{glue}</script>
</body></html>
"""

# Glue only: budgets restyle the plotted points' opacity; headers sort their table.
_GLUE = """
function applyBudgets() {
  const budgets = Array.from(document.querySelectorAll('input.budget'))
    .filter(el => el.value !== '' && !isNaN(parseFloat(el.value)))
    .map(el => ({i: +el.dataset.index, d: +el.dataset.direction, v: parseFloat(el.value)}));
  let meet = 0, total = 0;
  document.querySelectorAll('.scatter .plotly-graph-div, .scatter3d .plotly-graph-div').forEach((gd, k) => {
    const opacities = gd.data.map(trace => (trace.customdata || []).map(row => {
      const ok = budgets.every(b => row[b.i] === null || (b.d > 0 ? row[b.i] <= b.v : row[b.i] >= b.v));
      if (k === 0) { total += 1; meet += ok ? 1 : 0; }
      return ok ? 1.0 : 0.12;
    }));
    Plotly.restyle(gd, {'marker.opacity': opacities});
  });
  document.getElementById('budget-count').textContent =
    budgets.length ? `${meet} of ${total} candidates meet the budgets` : '';
}
document.querySelectorAll('input.budget').forEach(el => el.addEventListener('input', applyBudgets));
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.order !== 'asc';
  th.dataset.order = asc ? 'asc' : 'desc';
  const key = tr => { const t = tr.cells[col].textContent.replace(/,/g, ''); const n = parseFloat(t);
                      return isNaN(n) ? t : n; };
  Array.from(body.rows).sort((a, b) => { const x = key(a), y = key(b);
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }).forEach(tr => body.appendChild(tr));
}));
"""
