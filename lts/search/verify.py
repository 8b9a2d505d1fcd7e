"""The front a search writes is measured whole.

A search composes each candidate's latency from parts (the embeddings-and-head graph plus its blocks, each block
shape timed once and shared: ``--latency-mode composed``): fast, and close to the whole graph's latency, but a
sum of parts. What it writes to ``models/`` is measured whole: before the front is written, every member's
whole forward graph is timed (``--latency-mode full``, in a fresh child, stored like any evaluation), and the
front is taken again among its members with those figures (a member that the others dominate once timed whole
drops out). Each member's ``metrics.json`` carries the whole figures and, under ``composed``, what the search
composed. The whole timings are appended to ``<run>/verified.jsonl`` the moment they exist, so a run killed
while verifying resumes without timing a member twice, and the report reads the same figures.

Only the members are timed, and the front is re-taken among them only: composition is not unbiased (on the
default space's exact front it read below the whole graph for most members), so a timed member compared with
untimed candidates' composed figures would lose to them for that bias alone, and timing each newcomer in turn
would walk through much of the space (on Archai's space it does).

Nothing is re-timed when the search measured whole already (``--latency-mode full``) or did not time latency.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from lts.cost.evaluator import EvalResult, Evaluator, whole_objectives
from lts.search.executors import Executor
from lts.search.fronts import pareto_front
from lts.search.record import RunRecord
from lts.search.settings import SearchSettings

log = logging.getLogger(__name__)
VERIFIED = "verified.jsonl"


def read_verified(run_dir: Path) -> dict[str, EvalResult]:
    """The whole timings a run made, by archid (the report reads them too)."""
    return RunRecord(run_dir, VERIFIED).load()


def whole_front(results: Sequence[EvalResult], whole: dict[str, EvalResult], objectives: Sequence[str],
                constraints: Sequence[Any] = (), composed_front: Sequence[EvalResult] | None = None
                ) -> tuple[list[EvalResult], list[EvalResult]]:
    """(`results` with the whole figures of those timed whole, the front written): the front of `results` as
    the search composed them (`composed_front` when the caller has it), taken again among its members with
    their whole figures."""
    if composed_front is None:
        composed_front = pareto_front(results, objectives, constraints)
    if not whole:
        return list(results), list(composed_front)
    members = {r.archid for r in composed_front}
    current = [r.with_whole_graph(whole.get(r.archid)) for r in results]
    return current, pareto_front([r for r in current if r.archid in members], objectives, constraints)


def measure_front_whole(results: Sequence[EvalResult], settings: SearchSettings, evaluator: Evaluator,
                        executor: Executor, run_dir: Path, progress: bool = True
                        ) -> tuple[list[EvalResult], list[EvalResult], dict[str, dict[str, Any]]]:
    """(the results with the members' whole figures, the front written, each member's composed figures).

    A member whose whole timing fails keeps its composed figures (and has none listed as composed: it was not
    measured whole).
    """
    timer = evaluator.whole_graph_evaluator()
    if timer is None:
        return list(results), pareto_front(results, settings.objectives, settings.constraints), {}
    from tqdm.auto import tqdm

    record = RunRecord(run_dir, VERIFIED)
    whole = {a: r for a, r in record.load().items() if r.ok}  # timed before a kill (a failure is tried again)
    composed_front = pareto_front(results, settings.objectives, settings.constraints)
    todo = [r.config for r in composed_front if r.archid not in whole]
    bar = tqdm(total=len(todo), desc="front, timed whole", unit="arch", disable=not progress or not todo,
               leave=True, dynamic_ncols=True)
    missing = []
    for config in todo:
        hit = timer.cached(config)
        if hit is None:
            missing.append(config)
            continue
        record.append(hit, 0)
        whole[hit.archid] = hit
        bar.update(1)
    for _, res in executor.evaluate(timer, missing):
        record.append(res, 0)
        timer.store(res)
        whole[res.archid] = res
        bar.update(1)
        if not res.ok:
            log.warning("%s: timing the whole graph failed (%s); its composed figures stay", res.archid, res.status)
    bar.close()
    current, front = whole_front(results, whole, settings.objectives, settings.constraints, composed_front)
    by_id = {r.archid: r for r in results}
    composed = {r.archid: {name: by_id[r.archid][name] for name in whole_objectives(evaluator.settings)}
                for r in front if r.archid in whole and whole[r.archid].ok}
    return current, front, composed
