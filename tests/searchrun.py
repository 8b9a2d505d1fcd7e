"""What the search tests share: a tiny space, deterministic objectives, and search.py run as users run it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from clirun import run_cli

REPO = Path(__file__).resolve().parents[1]
DETERMINISTIC = "non_embedding_params,onnx_file_mb"  # no measurement: same seed, same front
TINY_SPACE = """
space:
  n_layer: [1, 2, 3]
  n_embd: [32, 48, 64, 96]
  n_inner: [64, 96, 128]
  n_head: [2, 4]
  vocab_size: 512
  n_positions: 64
"""


def search(tmp: Path, *args, name="run", check=False, fault=None, cache="cache.sqlite", popen=False):
    """`search.py` in `tmp` writing into tmp/<name>, tmp/models, tmp/assets, tmp/<cache>; `fault`: $LTS_FAULT."""
    env = {**os.environ, "LTS_FAULT": fault or ""}
    cmd = [sys.executable, str(REPO / "search.py"), "--run-dir", str(tmp / name), "--out", str(tmp / "models"),
           "--assets-dir", str(tmp / "assets"), "--cache", str(tmp / cache), "--no-progress", *map(str, args)]
    if popen:
        return subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    r = run_cli(cmd[1:], cwd=tmp, env=env, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def tiny_space(tmp: Path) -> Path:
    path = tmp / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


def concurrent_searches(tmp: Path, seeds: tuple[int, ...], *args, timeout_s: float = 300) -> list[Path]:
    """Start one `search.py` per seed in `tmp` (same cwd, cache and models/, default run folders), all together.

    Each process stops at the ``front`` fault point (just before it swaps its front into models/)
    until every one has arrived (``LTS_FAULT=front:sync``): every run has read models/ as it found
    it at its start and none has written yet, so the runs truly overlap where they could lose each
    other's members. Returns the run folders, in seed order.
    """
    env = {**os.environ, "LTS_FAULT": "front:sync", "LTS_FAULT_SYNC": str(tmp / ".barrier"),
           "LTS_FAULT_SYNC_N": str(len(seeds))}
    cmd = [sys.executable, str(REPO / "search.py"), "--cache", "cache.sqlite", "--no-progress", *map(str, args)]
    procs = [subprocess.Popen(cmd + ["--seed", str(s)], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for s in seeds]
    outs = [p.communicate(timeout=timeout_s) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert len(os.listdir(tmp / ".barrier")) == len(seeds)  # every run reached the barrier
    runs = sorted((tmp / "runs").iterdir())
    assert len(runs) == len(seeds)
    return sorted(runs, key=lambda r: int(r.name.split("-seed")[1].split("-")[0]))
