"""Every local engine in conftest.executor_case keeps the Executor contract (lts.testing.executor); RayExecutor
runs the same suite on a real two-node cluster in tests/search/test_ray.py."""

from lts.testing.executor import ExecutorContract


class TestExecutors(ExecutorContract):
    pass
