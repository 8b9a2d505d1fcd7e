"""The front a search writes is measured whole.

A search composes each candidate's latency from parts or predicts its costs (``--costs predicted``): fast, and
close to the whole graph's figures, but not them. What it writes to ``models/`` is measured whole: before the
front is written, every member's whole forward graph is measured (its latency and peak memory on one session,
stored like any evaluation), and the front is taken again among its members with those figures (a member that the
others dominate once measured whole drops out). Each member's ``metrics.json`` carries the whole figures and,
under ``composed``, what the search composed or predicted. The whole figures are appended to
``<run>/verified.jsonl`` the moment they exist, so a run killed while measuring resumes without measuring a
member twice, and the report reads the same figures.

As many repeats as the decision needs: every member is first timed quickly (one round beside the reference
graph: ``lts.cost.evaluator.QUICK_TIMING``), its noise measured all the same; only the members whose place on
the front rests on a latency tie within that noise (``lts.search.fronts.near_ties``) are timed again with the
full protocol. Each member is measured in a fresh child of its own, as any candidate: a peak includes what the
first session of a process costs (ONNX Runtime's own set-up: 16-19 MiB at any size, measured on the developers'
machine), and a member measured after another in one process would read that much less: members are not batched.

Only the members are measured, and the front is re-taken among them only: composition is not unbiased (on the
default space's exact front it read below the whole graph for most members), so a measured member compared with
unmeasured candidates' composed figures would lose to them for that bias alone, and measuring each newcomer in
turn would walk through much of the space (on Archai's space it does).

Nothing is measured again when the search measured whole already (``--latency-mode full``, ``--costs measured``)
or measured no latency or memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from lts.cost import probes
from lts.cost.evaluator import EvalResult, Evaluator, whole_objectives
from lts.cost.objectives import REGISTRY
from lts.families import Arch
from lts.search.executors import Executor
from lts.search.fronts import near_ties, pareto_front
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

    Every member is measured whole quickly (``Evaluator.whole_graph_evaluator(quick=True)``); the members whose
    place on the front rests on a latency tie within that timing's noise (:func:`lts.search.fronts.near_ties`)
    are timed again with the full protocol. A member whose whole measurement fails keeps its composed figures
    (and has none listed as composed: it was not measured whole).
    """
    full = evaluator.whole_graph_evaluator()
    if full is None:
        return list(results), pareto_front(results, settings.objectives, settings.constraints), {}
    quick = evaluator.whole_graph_evaluator(quick=True)
    assert quick is not None
    record = RunRecord(run_dir, VERIFIED)
    whole = {a: r for a, r in record.load().items() if r.ok}  # measured before a kill (a failure is tried again)
    composed_front = pareto_front(results, settings.objectives, settings.constraints)
    todo = [r.config for r in composed_front if r.archid not in whole]
    _measure(quick, todo, whole, record, executor, "front, measured whole", progress)
    members = [r.with_whole_graph(whole.get(r.archid)) for r in composed_front]
    timed = [n for n in whole_objectives(evaluator.settings)
             if REGISTRY[n].probe == probes.parts_probe(full.settings.run_probes)]
    ties = near_ties(members, settings.objectives, timed, settings.constraints)
    again = [r.config for r in composed_front if r.archid in ties and r.archid in whole]
    if again:
        log.info("%d of the front's %d members are within noise of a neighbour: timed again in full", len(again),
                 len(composed_front))
    _measure(full, again, whole, record, executor, "near ties, timed in full", progress)
    current, front = whole_front(results, whole, settings.objectives, settings.constraints, composed_front)
    by_id = {r.archid: r for r in results}
    composed = {r.archid: {name: by_id[r.archid][name] for name in whole_objectives(evaluator.settings)}
                for r in front if r.archid in whole and whole[r.archid].ok}
    return current, front, composed


def _measure(timer: Evaluator, configs: Sequence[Arch], whole: dict[str, EvalResult], record: RunRecord,
             executor: Executor, desc: str, progress: bool) -> None:
    """Measure `configs` whole with `timer` (its store first), each recorded the moment it exists."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(configs), desc=desc, unit="arch", disable=not progress or not configs, leave=True,
               dynamic_ncols=True)
    missing = []
    for config in configs:
        hit = timer.cached(config)
        if hit is None:
            missing.append(config)
            continue
        record.append(hit, 0)
        whole[hit.archid] = hit
        bar.update(1)
    for _, res in executor.evaluate(timer, missing):
        timer.store(res)
        record.append(res, 0)
        if res.ok:
            whole[res.archid] = res
        else:
            log.warning("%s: measuring the whole graph failed (%s); its figures before stay", res.archid,
                        res.status)
        bar.update(1)
    bar.close()

