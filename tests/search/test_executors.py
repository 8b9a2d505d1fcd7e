import json
import sqlite3

import pytest
from searchrun import concurrent_searches, rows

from lts.core.errors import LTSError
from lts.search.executors import LocalExecutor, make_executor


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("workers", [1, 3])
def test_local_executor_returns_every_result_with_its_index(workers):
    out = dict(LocalExecutor(workers).map(_square, list(range(10))))
    assert out == {i: i * i for i in range(10)}


def test_bad_engine_and_workers():
    with pytest.raises(LTSError):
        make_executor("spark", 1)
    with pytest.raises(LTSError):
        LocalExecutor(0)


@pytest.mark.heavy
def test_two_searches_in_one_folder_do_not_interfere(tmp_path):
    """Same cwd, same cache, default run folders, truly concurrent (held at a barrier), different seeds:
    each run's record is whole and its own, the shared cache holds both runs' candidates."""
    runs = concurrent_searches(tmp_path, (1, 2), "--objectives", "non_embedding_params,onnx_file_mb",
                               "--generations", 3, "--population", 6)
    evals = [rows(r / "evaluations.csv") for r in runs]
    assert [len(e) for e in evals] == [18, 18]
    ids = [[e["archid"] for e in run] for run in evals]
    assert ids[0] != ids[1]  # different seeds: each folder holds its own search, not the other's
    for run, seed in zip(runs, (1, 2)):
        assert json.loads((run / "job.json").read_text())["seed"] == seed
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        cached = {row[0] for row in db.execute("SELECT archid FROM results")}
    assert set(ids[0]) | set(ids[1]) <= cached
