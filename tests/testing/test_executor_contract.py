"""Every engine in conftest.executor_case keeps the Executor contract (lts.testing.executor), Ray on a real
two-node cluster."""

import pytest

from lts.testing.executor import ExecutorContract

pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster at a time on this machine (with tests/search/test_ray)


class TestExecutors(ExecutorContract):
    pass
