"""Contract suites for LTS's extension points, shipped so that a new implementation gets its tests for free.

Each module holds one suite: a class of pytest tests, one per clause of a Protocol's written contract,
run against whatever its fixture provides (as optuna's ``optuna.testing.pytest_storages`` does for
its storages):

- :mod:`lts.testing.target`: :class:`~lts.cost.target.Target`, fixture ``target`` (an instance);
- :mod:`lts.testing.store`: :class:`~lts.cost.store.Store`, fixture ``store_factory`` (``path -> Store``);
- :mod:`lts.testing.executor`: :class:`~lts.search.executors.Executor`, fixture ``executor_case``
  (an :class:`~lts.testing.executor.ExecutorCase`).

To test an implementation, subclass the suite in a test module (pytest collects ``Test*`` classes
only, so the suite itself never runs on its own) and provide its fixture, e.g.::

    from lts.testing.target import TargetContract

    class TestMyTarget(TargetContract):
        @pytest.fixture
        def target(self):
            return MyTarget(threads=2)

LTS registers its own implementations in ``tests/contracts/``. Importing these modules needs pytest.
"""
