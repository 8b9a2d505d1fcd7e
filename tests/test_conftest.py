"""What tests/conftest.py promises every test: no cache of the user's is read, and nothing skips silently in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NO_SKIP = "LTS_NO_SKIP"


@pytest.fixture
def session_caches(request) -> Path:
    """The folder tests/conftest.py made for the session's caches (its module as pytest loaded it: `import
    conftest` could give another folder's conftest.py)."""
    return request.config.pluginmanager.get_plugin(str(REPO / "tests" / "conftest.py")).SESSION_CACHES


def inside(path: str | os.PathLike, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def test_every_cache_the_libraries_read_is_the_sessions_and_lts_its_tests_own(isolated_caches, session_caches):
    """Where each library looks, as it resolved it (most at import): inside the session's temp folder, never
    under the user's home or a cache variable of the user's environment; LTS's cache root is this test's own,
    empty."""
    import datasets.config
    import matplotlib
    import torch.hub
    from huggingface_hub import constants

    from lts.core.fileio import cache_root

    where = {"HF_HOME": constants.HF_HOME, "hub": constants.HF_HUB_CACHE, "assets": constants.HF_ASSETS_CACHE,
             "xet": constants.HF_XET_CACHE, "token": constants.HF_TOKEN_PATH,
             "datasets": datasets.config.HF_DATASETS_CACHE, "modules": datasets.config.HF_MODULES_CACHE,
             "torch hub": torch.hub.get_dir(), "inductor": os.environ["TORCHINDUCTOR_CACHE_DIR"],
             "triton": os.environ["TRITON_CACHE_DIR"], "matplotlib cache": matplotlib.get_cachedir(),
             "matplotlib config": matplotlib.get_configdir()}
    outside = {what: path for what, path in where.items() if not inside(path, session_caches)}
    assert not outside, f"outside the session's caches ({session_caches}): {outside}"
    assert inside(cache_root(), isolated_caches) and not (cache_root().exists() and any(cache_root().iterdir()))


MODULE_SKIPPED_AT_COLLECTION = """
import pytest

pytest.importorskip("lts_no_such_module", reason="a requirement is missing")


def test_never_collected():
    pass
"""


def test_a_module_skipped_as_it_is_collected_fails_where_no_skip_is_set(tmp_path):
    """A module-level importorskip (tests/search/test_ray.py's for Ray) skips the whole module before its tests
    exist: a skip outside the reach of the per-test hook. With $LTS_NO_SKIP=1 it is a collection error."""
    (tmp_path / "test_requirement.py").write_text(MODULE_SKIPPED_AT_COLLECTION)

    def pytest_run(no_skip: str) -> subprocess.CompletedProcess:
        # this conftest as a plugin, on a folder of its own (no setup.cfg, no other test)
        env = {**os.environ, NO_SKIP: no_skip, "PYTHONPATH": str(REPO / "tests")}
        env.pop("PYTEST_ADDOPTS", None)
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "conftest", "-p", "no:cacheprovider",
                               "-p", "no:xdist", "--rootdir", str(tmp_path), str(tmp_path)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    skipped = pytest_run("0")
    assert skipped.returncode == 5 and "1 skipped" in skipped.stdout, skipped.stdout[-2000:]
    failed = pytest_run("1")
    assert failed.returncode == 2 and "1 error" in failed.stdout, failed.stdout[-2000:]
    assert f"skipped where ${NO_SKIP}=1" in failed.stdout and "a requirement is missing" in failed.stdout
