"""The implementations the contract suites (lts.testing) run against, and the one Ray cluster they share.

A new Target, Store or engine is tested by adding it to a list here.
"""

from __future__ import annotations

import logging

import pytest

from lts.cost.store import SQLiteStore
from lts.cost.target import CPUTarget
from lts.search.executors import LocalExecutor, RayExecutor
from lts.testing.executor import FAULTS, ExecutorCase

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


def require_ray():
    """Ray, or skip saying how to install it (where ``LTS_NO_SKIP=1``, as in CI, tests/conftest.py fails it)."""
    return pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[distributed]'")


@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-node Ray cluster on this machine (a head and a worker raylet, one CPU each), joined by this
    process with FAULTS in its workers' environment. Started once per module: it is the slow part."""
    ray = require_ray()
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # a connection left by another module would hide this cluster
        ray.shutdown()
    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20}
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, runtime_env={"env_vars": {"LTS_FAULT": FAULTS}}, log_to_driver=False,
                 include_dashboard=False, logging_level=logging.WARNING)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(params=["local-1", "local-3", pytest.param("ray", marks=pytest.mark.heavy)])
def executor_case(request):
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
        # Joins the connection ray_cluster made (ray is initialised): close() leaves the cluster up for the next test.
        return ExecutorCase(RayExecutor, loses_workers=True, retries=RayExecutor.RETRIES)
    return ExecutorCase(lambda: LocalExecutor(int(request.param.split("-")[1])))


# Clauses that do not apply to an implementation are left out at collection (never a skip, which CI fails):
# (test name, implementation id) -> why.
NOT_APPLICABLE = {
    ("test_a_lost_worker_is_retried_then_a_failed_result", "local-1"): "runs candidates in this process",
    ("test_a_lost_worker_is_retried_then_a_failed_result", "local-3"): "runs candidates in this process",
    ("test_peak_memory_window_starts_at_reset", "cpu-1thread-sampled"): "samples memory from outside",
}


def pytest_collection_modifyitems(config, items):
    def applies(item):
        implementations = set(item.callspec.params.values()) if hasattr(item, "callspec") else set()
        return not any((item.originalname, impl) in NOT_APPLICABLE for impl in implementations)

    left_out = [item for item in items if not applies(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if applies(item)]
