"""tests/clirun.py runs a case forked from its server only where the fork runs as the case's environment says.

The libraries the server imported read some variables once, at import (huggingface_hub its ``HF_HOME``, hub cache
and offline mode): a case that sets one of those must run in a fresh interpreter, or it tests the server's
settings instead of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import PRELOAD, forkable, import_time_differences, run_cli

REPO = Path(__file__).resolve().parents[1]
HUB_ID = "lts-test/tiny-hub"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# What a CLI's process saw: its parent (this test process for a fresh interpreter, the server's waiter for a
# fork) and huggingface_hub's settings, which the library fixed when it was imported.
PROBE = """
import json, os
from huggingface_hub import constants
print(json.dumps({"parent": os.getppid(), "hf_home": constants.HF_HOME, "hub_cache": constants.HF_HUB_CACHE,
                  "offline": constants.HF_HUB_OFFLINE, "fault": os.environ.get("LTS_FAULT")}))
"""


def probe(tmp_path: Path, env: dict[str, str]) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    proc = run_cli([script], cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_a_case_with_its_own_hf_home_and_offline_mode_runs_with_them(tmp_path):
    """Two cases, each with an HF_HOME and HF_HUB_OFFLINE of its own: each child's huggingface_hub has that
    case's, so each ran in a fresh interpreter (this process its parent); a case that differs from the server
    only in a variable read when used is still forked."""
    online = probe(tmp_path, {**os.environ, "HF_HOME": str(tmp_path / "a"), "HF_HUB_OFFLINE": "0"})
    offline = probe(tmp_path, {**os.environ, "HF_HOME": str(tmp_path / "b"), "HF_HUB_OFFLINE": "1"})
    assert (online["hf_home"], online["hub_cache"], online["offline"]) == \
        (str(tmp_path / "a"), str(tmp_path / "a" / "hub"), False)
    assert (offline["hf_home"], offline["hub_cache"], offline["offline"]) == \
        (str(tmp_path / "b"), str(tmp_path / "b" / "hub"), True)
    assert online["parent"] == offline["parent"] == os.getpid(), "not a fresh interpreter"

    case = {**os.environ, "LTS_FAULT": "nothing:raise"}
    forked = probe(tmp_path, case)
    assert forked["fault"] == "nothing:raise" and forked["hf_home"] == os.environ["HF_HOME"]
    assert forked["parent"] != os.getpid(), (
        f"a case that only sets LTS_FAULT was not forked from the server: differs from this process in "
        f"{import_time_differences(case, os.environ)}, from the server in {server_differences(case)}")


def server_differences(env: dict[str, str]) -> list[str] | str:
    """Where `env` differs from the fork server's own environment (what its waiters inherit), read from /proc."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, TypeError) as exc:
        return f"server {pid} unreadable ({exc})"
    server = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
    return import_time_differences(env, server)


def hub_cache_with_the_model(hf_home: Path, model: Path) -> Path:
    """`hf_home` with `model`'s files cached under the hub id HUB_ID, as a download leaves them."""
    repo = hf_home / "hub" / ("models--" + HUB_ID.replace("/", "--"))
    shutil.copytree(model, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return hf_home


@pytest.mark.heavy
def test_generate_text_finds_a_hub_id_in_the_cases_own_hf_home(tiny_model_dir, tmp_path):
    """generate_text.py with a hub id, offline: found in the case's HF_HOME (the server's has no such model), and
    not found in another case's empty one."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    argv = [REPO / "generate_text.py", HUB_ID, HUB_ID, "Once upon", "--greedy", "--max-new-tokens", "3"]
    cached = run_cli(argv, cwd=tmp_path, env={**env, "HF_HOME": str(hub_cache_with_the_model(tmp_path / "hf",
                                                                                              tiny_model_dir))})
    assert cached.returncode == 0, cached.stderr[-3000:]
    assert cached.stdout.startswith("Once upon"), cached.stdout
    empty = run_cli(argv, cwd=tmp_path, env={**env, "HF_HOME": str(tmp_path / "empty")})
    assert empty.returncode == 2, empty.stderr[-3000:]
    assert "HF_HUB_OFFLINE is set and it is not in the local hub cache" in empty.stderr, empty.stderr


def test_only_the_forkable_variables_may_differ():
    server = {"HF_HOME": "/a", "LTS_FAULT": "", "PATH": "/bin"}
    assert import_time_differences({**server, "LTS_FAULT": "x", "LTS_NEW": "1", "COLUMNS": "80"}, server) == []
    assert import_time_differences({**server, "HF_HOME": "/b"}, server) == ["HF_HOME"]
    assert import_time_differences({**server, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "/p"}, server) == \
        ["HF_HUB_OFFLINE", "PYTHONPATH"]
    unset = dict(server)
    del unset["PATH"]
    assert import_time_differences(unset, server) == ["PATH"]


# Records, in a fresh interpreter, every variable read by name while the server's modules are imported, and
# where the environment is read as a whole (its names then filtered by the reader).
RECORD_IMPORT_READS = """
import importlib, json, os, sys, traceback
read, scans = set(), set()
class Recording(type(os.environ)):
    def __getitem__(self, key):
        read.add(key)
        return super().__getitem__(key)
    def __contains__(self, key):
        read.add(key)
        return super().__contains__(key)
    def __iter__(self):
        frames = [f.filename for f in traceback.extract_stack()[:-1] if "_collections_abc" not in f.filename]
        scans.add(frames[-1])
        return super().__iter__()
os.environ.__class__ = Recording
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps({"read": sorted(read), "scans": sorted(scans)}))
"""
# Readers of the whole environment at import, each checked by hand: what they take from it is not forkable.
SCANS = {"tqdm/utils.py": "tqdm's envwrap: TQDM_* overrides of its defaults"}


@pytest.mark.heavy
def test_no_library_reads_a_forkable_variable_at_import(tmp_path):
    """The variables clirun lets a forked case change are read by no preloaded module at import (by name); the
    environment is read as a whole only where checked by hand (SCANS). A library that starts reading one of
    them at import fails this test, before a forked case silently runs with the server's value."""
    # None of them set: a reader that copies the whole environment does not look them up by name then
    env = {k: v for k, v in os.environ.items() if not forkable(k)}
    proc = subprocess.run([sys.executable, "-c", RECORD_IMPORT_READS, *PRELOAD], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "HF_HOME" in got["read"] and "HF_HUB_OFFLINE" in got["read"], "the recording saw nothing"
    read = [v for v in got["read"] if forkable(v)]
    assert not read, f"read at import, so a forked case cannot change them: {read}"
    unchecked = [s for s in got["scans"] if not any(s.replace(os.sep, "/").endswith(k) for k in SCANS)]
    assert not unchecked, f"read the whole environment at import (check what they take, then add to SCANS): " \
                          f"{unchecked}"
