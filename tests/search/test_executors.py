import subprocess
import sys
from pathlib import Path

import pytest

from lts.core.errors import LTSError
from lts.search.executors import LocalExecutor, make_executor

REPO = Path(__file__).resolve().parents[2]


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


def test_two_searches_in_one_folder_do_not_interfere(tmp_path):
    """Same cwd, same cache, default run folders, started together: both complete with full CSVs."""
    cmd = [sys.executable, str(REPO / "search.py"), "--objectives", "non_embedding_params,onnx_file_mb",
           "--generations", "3", "--population", "6", "--cache", "cache.sqlite", "--no-progress"]
    procs = [subprocess.Popen(cmd + ["--seed", str(s)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in (1, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    csvs = [(r / "evaluations.csv").read_text().splitlines() for r in runs]
    assert len(csvs[0]) == len(csvs[1]) == 19
    assert [line.split(",")[1] for line in csvs[0]] == [line.split(",")[1] for line in csvs[1]]
