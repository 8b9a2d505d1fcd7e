"""The implementations the contract suites (lts.testing) run against (RayExecutor: in tests/search/test_ray.py).

A new Target, Store or engine is tested by adding it to a list here.
"""

from __future__ import annotations

import pytest

from lts.cost.store import SQLiteStore
from lts.cost.target import CPUTarget
from lts.search.executors import LocalExecutor
from lts.testing.executor import ExecutorCase

TARGETS = {
    "cpu": lambda: CPUTarget(),
    "cpu-int8": lambda: CPUTarget(precision="int8"),
    "cpu-1thread-sampled": lambda: CPUTarget(threads=1, memory_probe="sampled", graph_optimization="basic"),
}
STORES = {"sqlite": SQLiteStore}  # a class or module-level function: the two-process clause pickles it


@pytest.fixture(params=list(TARGETS))
def target(request):
    return TARGETS[request.param]()


@pytest.fixture(params=list(STORES))
def store_factory(request):
    return STORES[request.param]


@pytest.fixture(params=["local-1", "local-3"])
def executor_case(request):
    """The local engines. RayExecutor runs the same suite in tests/search/test_ray.py, on that module's cluster
    (one Ray cluster at a time on this machine)."""
    return ExecutorCase(lambda: LocalExecutor(int(request.param.split("-")[1])))


# Clauses that do not apply to an implementation are left out at collection (never a skip, which CI fails):
# (test name, implementation id) -> why.
NOT_APPLICABLE = {
    ("test_a_lost_worker_is_retried_then_a_failed_result", "local-1"): "runs candidates in this process",
    ("test_a_lost_worker_is_retried_then_a_failed_result", "local-3"): "runs candidates in this process",
    ("test_peak_memory_window_starts_at_reset", "cpu-1thread-sampled"): "samples memory from outside",
}


def pytest_collection_modifyitems(config, items):
    def applies(item):  # every item of the session comes here, not only this folder's
        if not hasattr(item, "callspec"):
            return True
        implementations = {v for v in item.callspec.params.values() if isinstance(v, str)}
        return not any((item.originalname, impl) in NOT_APPLICABLE for impl in implementations)

    left_out = [item for item in items if not applies(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if applies(item)]
