"""The :class:`~lts.search.executors.Executor` contract as tests: subclass :class:`ExecutorContract`, provide
``executor_case`` (an :class:`ExecutorCase`).

Failures are injected with ``LTS_FAULT`` (:mod:`lts.core.faults`): the suite sets it in this
process for the candidates :data:`RAISES` and nothing else. An engine whose tasks run in other
processes (Ray workers) must start them with ``LTS_FAULT=FAULTS`` in their environment, which
also makes the worker computing :data:`KILLS` die (Ray: ``runtime_env={"env_vars": {...}}``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import pytest

from lts.cost.child import MeasureError
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.cost.objectives import Timing
from lts.cost.settings import MeasureSettings
from lts.cost.store import SQLiteStore
from lts.cost.target import CPUTarget, Target
from lts.families import arch_from_dict
from lts.search.executors import Executor


def _gpt2(n_layer: int, n_embd: int, n_inner: int, n_head: int) -> Any:
    """A GPT-2 of the default family, through the registry (nothing outside lts/families/gpt2 imports it)."""
    return arch_from_dict({"n_layer": n_layer, "n_embd": n_embd, "n_inner": n_inner, "n_head": n_head})


RAISES = _gpt2(1, 40, 80, 2)  # its task raises where it runs
KILLS = _gpt2(1, 48, 96, 2)   # its task kills the process it runs in (only where FAULTS is set)
FAULTS = f"evaluate:raise:{RAISES.archid},evaluate:kill:{KILLS.archid}"
CONFIGS = (_gpt2(1, 32, 64, 2), _gpt2(2, 64, 128, 2), _gpt2(1, 64, 256, 4), _gpt2(3, 32, 32, 1))


@dataclass(frozen=True)
class ExecutorCase:
    """An engine to test: how to make one, and which of the optional clauses apply to it."""

    make: Callable[[], Executor]
    loses_workers: bool = False  # tasks run in worker processes of their own, which can die under them
    # how many times a task lost with its worker is tried again before it is a failure: the number the engine
    # promises its users, written here by the case (not read from the engine, which would agree with itself)
    retries: int = 0
    # the fingerprint id of the hardware its results are computed on; None: this machine's (a local engine, or a
    # cluster that has nodes of this machine's kind)
    hardware: str | None = None


def _unmeasured() -> EvalSettings:
    """Proxy and graph size only: deterministic, milliseconds a candidate, no measuring process."""
    return EvalSettings(on_target=False, target=CPUTarget(threads=1))


def _same_values(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal objective values, NaN (not obtained) equal to NaN: a result that crossed a process is a copy."""
    def nan(v: Any) -> bool:
        return isinstance(v, float) and math.isnan(v)

    return a.keys() == b.keys() and all(a[k] == b[k] or (nan(a[k]) and nan(b[k])) for k in a)


def _cannot_time_reference(settings: MeasureSettings, target: Target) -> Timing:
    raise MeasureError("the reference graph cannot be timed here (injected by the contract suite)")


class ExecutorContract:
    """The clauses every :class:`~lts.search.executors.Executor` keeps. Fixture to provide: ``executor_case``."""

    @pytest.fixture
    def executor(self, executor_case: ExecutorCase) -> Iterator[Executor]:
        executor = executor_case.make()
        yield executor
        executor.close()

    def _evaluator(self, executor: Executor, settings: EvalSettings | None = None, **kwargs: object) -> Evaluator:
        settings = settings or _unmeasured()
        return Evaluator(settings, store=SQLiteStore(None), hardware=executor.prepare(settings), **kwargs)

    # ---- prepare / describe
    def test_prepare_names_the_hardware_the_results_are_computed_on(self, executor: Executor,
                                                                     executor_case: ExecutorCase) -> None:
        """prepare() gives None (this machine's) or a fingerprint; the evaluator keys its cache with that hardware,
        and every result is computed on it: the case's, else this machine's (read here, not from the engine)."""
        expected = executor_case.hardware or CPUTarget(threads=1).fingerprint()["id"]
        hardware = executor.prepare(_unmeasured())
        assert hardware is None or hardware["id"] == expected, hardware
        evaluator = self._evaluator(executor)
        assert evaluator.hardware["id"] == expected
        got = dict(executor.evaluate(evaluator, CONFIGS))
        assert {r.hardware for r in got.values()} == {expected}, {i: r.hardware for i, r in got.items()}

    def test_describe_is_one_line(self, executor: Executor) -> None:
        executor.prepare(_unmeasured())
        line = executor.describe()
        assert isinstance(line, str) and line.strip() and "\n" not in line

    # ---- evaluate
    def test_every_candidate_comes_back_once_with_its_index(self, executor: Executor) -> None:
        """Duplicates included: n configs, n results, each at the index of its config, whatever the order."""
        configs = [*CONFIGS, CONFIGS[1]]
        evaluator = self._evaluator(executor)
        got = list(executor.evaluate(evaluator, configs))
        assert sorted(i for i, _ in got) == list(range(len(configs))), [i for i, _ in got]
        assert all(r.archid == configs[i].archid for i, r in got), "a result came back under another's index"
        assert all(r.ok for _, r in got), [r.status for _, r in got]

    def test_results_are_what_the_evaluator_computes_here(self, executor: Executor) -> None:
        """The engine moves the work; it never changes a value."""
        evaluator = self._evaluator(executor)
        got = dict(executor.evaluate(evaluator, CONFIGS))
        for i, config in enumerate(CONFIGS):
            here = evaluator.compute(config)
            assert _same_values(got[i].values, here.values), (config, dict(got[i].values), dict(here.values))

    def test_no_candidates_no_results(self, executor: Executor) -> None:
        assert list(executor.evaluate(self._evaluator(executor), [])) == []

    def test_a_task_that_raises_is_a_failed_result_and_the_rest_go_on(self, executor: Executor,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LTS_FAULT", f"evaluate:raise:{RAISES.archid}")
        configs = [CONFIGS[0], RAISES, CONFIGS[1]]
        got = dict(executor.evaluate(self._evaluator(executor), configs))
        assert sorted(got) == [0, 1, 2]
        assert got[1].status.startswith("failed: ") and "injected fault at evaluate" in got[1].status, got[1].status
        assert got[0].ok and got[2].ok, (got[0].status, got[2].status)

    def test_an_error_preparing_a_task_on_the_driver_is_a_failed_result(self, executor: Executor) -> None:
        """Evaluator.task raising (here: the reference graph cannot be timed) fails that candidate, as
        Evaluator.compute does; evaluate itself does not raise."""
        settings = EvalSettings(on_target=True, target=CPUTarget(threads=1), latency_mode="full")
        evaluator = self._evaluator(executor, settings, time_reference=_cannot_time_reference)
        got = dict(executor.evaluate(evaluator, CONFIGS[:2]))
        assert sorted(got) == [0, 1]
        for result in got.values():
            assert result.status.startswith("failed: ") and "reference graph cannot be timed" in result.status, \
                result.status

    def test_a_lost_worker_is_retried_then_a_failed_result(self, executor: Executor, executor_case: ExecutorCase,
                                                           caplog: pytest.LogCaptureFixture) -> None:
        """Each retry is logged as a warning naming the candidate; after the last, a failure saying the worker
        was lost; the other candidates are unaffected."""
        if not executor_case.loses_workers:
            pytest.skip("runs candidates in this process: it has no worker to lose")
        configs = [CONFIGS[0], KILLS, CONFIGS[1]]
        with caplog.at_level(logging.WARNING):
            got = dict(executor.evaluate(self._evaluator(executor), configs))
        assert sorted(got) == [0, 1, 2]
        assert got[1].status.startswith("failed: ") and "lost" in got[1].status, got[1].status
        assert got[0].ok and got[2].ok, (got[0].status, got[2].status)
        retried = [r for r in caplog.records if r.levelno == logging.WARNING and KILLS.archid in r.getMessage()]
        assert len(retried) == executor_case.retries, [r.getMessage() for r in retried]

    def test_close_can_be_called_twice(self, executor_case: ExecutorCase) -> None:
        executor = executor_case.make()
        executor.close()
        executor.close()


__all__ = ["ExecutorCase", "ExecutorContract", "FAULTS", "KILLS", "RAISES", "CONFIGS"]
