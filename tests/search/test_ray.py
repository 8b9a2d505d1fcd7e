"""search.py --engine ray on a real Ray cluster of two nodes on this machine (ray.cluster_utils: a head and a
worker node, each a raylet of its own with one CPU, at this machine's address), driven through the CLI as a user
would.

Needs Ray (the ``distributed`` extra; ``.ci/run`` installs it). Without it the module is skipped as it is collected,
saying so; where ``LTS_NO_SKIP=1`` (as in CI) that skip is a collection error (tests/conftest.py), so these tests
and the Ray executor contract cannot vanish from a green run.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from searchrun import TINY_SPACE

from lts.search.executors import RayExecutor
from lts.testing.executor import ExecutorCase, ExecutorContract

pytestmark = pytest.mark.heavy  # whole searches on a cluster: seconds each

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[distributed]'")

REPO = Path(__file__).resolve().parents[2]
UNMEASURED = ("--objectives", "non_embedding_params,onnx_file_mb", "--generations", "2", "--population", "6",
              "--seed", "1", "--no-progress")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20}
    c = Cluster(initialize_head=True, connect=False, head_node_args={**node, "include_dashboard": False})
    c.add_node(**node)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def search(tmp: Path, name: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "search.py"), *args, "--run-dir", str(tmp / name / "run"),
                           "--cache", str(tmp / name / "c.sqlite"), "--out", str(tmp / name / "models"),
                           "--assets-dir", str(tmp / name / "assets")],
                          cwd=tmp, capture_output=True, text=True, timeout=timeout)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines() if line.strip()]


def front(run: Path) -> list[str]:
    with open(run / "pareto.csv", newline="") as f:
        return sorted(row["archid"] for row in csv.DictReader(f))


def test_ray_search_front_equals_the_local_one(cluster, tmp_path):
    local = search(tmp_path, "local", *UNMEASURED)
    assert local.returncode == 0, local.stderr[-3000:]
    remote = search(tmp_path, "ray", *UNMEASURED, "--engine", "ray", "--ray-address", cluster.address)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "engine      : ray, 2 node(s) of hardware" in remote.stdout
    assert front(tmp_path / "ray" / "run") == front(tmp_path / "local" / "run")
    got = {r["archid"]: r["values"] for r in records(tmp_path / "ray" / "run")}
    assert got == {r["archid"]: r["values"] for r in records(tmp_path / "local" / "run")}
    assert {r["node"] for r in records(tmp_path / "ray" / "run")} == {socket.gethostname()}


def _measured_config(tmp: Path) -> Path:
    import yaml

    cfg = tmp / "measured.yaml"
    cfg.write_text(yaml.safe_dump({**yaml.safe_load(TINY_SPACE), "seq_len": 32, "threads": 1, "latency_mode": "full",
                                   "objectives": "non_embedding_params,onnx_latency_s"}))
    return cfg


def test_measured_results_carry_the_fingerprint_of_the_node_that_measured(cluster, tmp_path):
    from lts.cost.target import cpu_fingerprint

    cfg = _measured_config(tmp_path)
    proc = search(tmp_path, "measured", "--config", str(cfg), "--generations", "1", "--population", "3",
                  "--no-progress", "--engine", "ray", "--ray-address", cluster.address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(tmp_path / "measured" / "run")
    assert len(recs) == 3 and all(r["status"] == "ok" for r in recs)
    assert {r["hardware"] for r in recs} == {cpu_fingerprint()["id"]}
    assert all(r["values"]["onnx_latency_s"] > 0 and r["measurement"]["probes"]["latency"]["full"] for r in recs)
    calibration = json.loads((tmp_path / "measured" / "run" / "calibration.json").read_text())
    assert calibration["hardware"]["id"] == cpu_fingerprint()["id"]


def test_a_per_layer_search_measures_on_the_cluster(cluster, tmp_path):
    """Per-layer candidates travel to the nodes and come back with one timed block per distinct block shape."""
    import yaml

    cfg = tmp_path / "paper.yaml"
    space = {**yaml.safe_load(TINY_SPACE)["space"], "per_layer": True}
    cfg.write_text(yaml.safe_dump({"space": space, "seq_len": 32, "threads": 1,
                                   "objectives": "non_embedding_params,onnx_latency_s"}))
    proc = search(tmp_path, "paper", "--config", str(cfg), "--generations", "1", "--population", "4",
                  "--no-progress", "--engine", "ray", "--ray-address", cluster.address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(tmp_path / "paper" / "run")
    assert len(recs) == 4 and all(r["status"] == "ok" and r["values"]["onnx_latency_s"] > 0 for r in recs)
    per_layer = [r for r in recs if isinstance(r["config"]["n_inner"], list) or isinstance(r["config"]["n_head"], list)]
    assert per_layer, "the seeded sample holds no per-layer candidate"
    for r in per_layer:
        c = r["config"]
        layers = [c[k] if isinstance(c[k], list) else [c[k]] * c["n_layer"] for k in ("n_inner", "n_head")]
        shapes = set(zip(*layers))
        assert set(r["measurement"]["probes"]["latency"]) == {"base", *(f"block:{f}x{h}" for f, h in shapes)}


def test_a_worker_killed_mid_search_loses_nothing(cluster, tmp_path):
    """SIGKILL the Ray worker process running a measurement: the candidate is tried again, the search finishes."""
    cfg = _measured_config(tmp_path)
    cmd = [sys.executable, str(REPO / "search.py"), "--config", str(cfg), "--generations", "1", "--population", "4",
           "--no-progress", "--engine", "ray", "--ray-address", cluster.address, "--run-dir", str(tmp_path / "run"),
           "--cache", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "models"), "--assets-dir",
           str(tmp_path / "assets")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, deadline = None, time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        # Only this test's cluster: its raylets are children of this process and start the workers, so a worker
        # of any other Ray on the machine is never touched.
        for p in psutil.Process().children(recursive=True):
            try:
                cmdline = p.cmdline()
            except psutil.Error:  # ended meanwhile
                continue
            if (cmdline or [""])[0].startswith("ray::run_task"):  # a worker inside a measurement
                p.kill()
                killed = p.pid
                break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "no worker was caught measuring: the search ended first"
    assert proc.returncode == 0, err[-3000:]
    assert "lost its Ray worker" in err and "trying again (1 of 2)" in err, err[-3000:]
    recs = records(tmp_path / "run")
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs), [r["status"] for r in recs]


def test_a_cluster_without_the_hardware_asked_for(cluster, tmp_path):
    proc = search(tmp_path, "nohw", *UNMEASURED, "--engine", "ray", "--ray-address", cluster.address,
                  "--ray-hardware", "0123456789")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "--ray-hardware 0123456789: no node of the cluster has that hardware" in line and "Traceback" not in \
        proc.stderr
    assert not (tmp_path / "nohw").exists(), "nothing written on bad input"


def test_a_driver_killed_mid_search_resumes(cluster, tmp_path):
    """SIGKILL of the driver after its 9th result (generation 2): --resume ends on the front of an unbroken run."""
    import os

    local = search(tmp_path, "local", *UNMEASURED)
    assert local.returncode == 0, local.stderr[-3000:]
    ray_args = (*UNMEASURED, "--engine", "ray", "--ray-address", cluster.address)
    env = dict(os.environ, LTS_FAULT="evaluated:kill@9")  # the driver only: the cluster's workers never see it
    killed = subprocess.run([sys.executable, str(REPO / "search.py"), *ray_args, "--run-dir", str(tmp_path / "r"),
                             "--cache", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "m"), "--assets-dir",
                             str(tmp_path / "a")], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert len(records(tmp_path / "r")) == 9
    resumed = subprocess.run([sys.executable, str(REPO / "search.py"), *ray_args, "--resume", "--run-dir",
                              str(tmp_path / "r")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert front(tmp_path / "r") == front(tmp_path / "local" / "run")


# ---------------------------------------------------------------------------------------------
# The Executor contract (lts.testing.executor), on this module's cluster: one Ray cluster at a time here.

@pytest.fixture(scope="class")
def joined(cluster):
    """This process joins the cluster as a driver, with the contract's faults in its workers' environment; the
    environment ray.init changes in this process (PYTHONBREAKPOINT, its debugger hook) is given back after."""
    import logging
    import os

    from lts.testing.executor import FAULTS

    if ray.is_initialized():
        ray.shutdown()
    before = dict(os.environ)
    ray.init(address=cluster.address, runtime_env={"env_vars": {"LTS_FAULT": FAULTS}}, log_to_driver=False,
             include_dashboard=False, logging_level=logging.WARNING)
    yield cluster
    ray.shutdown()
    os.environ.clear()
    os.environ.update(before)


class TestRayExecutorContract(ExecutorContract):
    @pytest.fixture
    def executor_case(self, joined):
        # RayExecutor() joins the connection `joined` made; its close() leaves the cluster up for the next test.
        # A lost task is tried twice more (what search.py tells the user: "trying again (1 of 2)"); the nodes are
        # this machine's, so its results are computed on this machine's hardware (the case's default).
        return ExecutorCase(RayExecutor, loses_workers=True, retries=2)
