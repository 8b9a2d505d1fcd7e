"""The :class:`~lts.cost.target.Target` contract as tests: subclass :class:`TargetContract`, provide ``target``.

Every clause of the Protocol's docstrings is one test here. The suite needs the target to be a
dataclass for the clauses about variants (``dataclasses.replace`` makes a copy that differs in one
setting); a target that is not one overrides the ``target_variants`` fixture instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from lts.cost.quantize import PRECISIONS
from lts.cost.target import Target

# A child process that takes the lock of the (pickled) target in argv[1] (argv[2]: exclusive or shared), says when
# it is about to ask, and once it holds the lock whether the file argv[3] exists by then.
_LOCK_CHILD = """
import os, pickle, sys
target = pickle.loads(bytes.fromhex(sys.argv[1]))
print("asking", flush=True)
with target.lock(sys.argv[2] == "exclusive"):
    print("holding", "released" if os.path.exists(sys.argv[3]) else "not-released", flush=True)
"""

# A child process that prints the key and fingerprint of the (pickled) target in argv[1].
_IDENTITY_CHILD = """
import json, pickle, sys
target = pickle.loads(bytes.fromhex(sys.argv[1]))
print(json.dumps({"key": target.key(), "fingerprint": target.fingerprint()}, sort_keys=True))
"""

CHILD_TIMEOUT_S = 60.0  # a child process imports onnxruntime: seconds on a loaded 2-core machine


def file_lock_waiters() -> set[int]:
    """The processes the kernel lists as waiting for a file lock (Linux: the ``->`` lines of /proc/locks)."""
    with open("/proc/locks") as f:
        return {int(fields[5]) for fields in map(str.split, f) if len(fields) > 5 and fields[1] == "->"}


def _lock_child(target: Target, kind: str, released: Path, tmp: Path) -> subprocess.Popen:
    """_LOCK_CHILD for `target`, once it said it is about to ask for the lock."""
    child = subprocess.Popen([sys.executable, "-c", _LOCK_CHILD, pickle.dumps(target).hex(), kind, str(released)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env(tmp))
    assert child.stdout is not None
    asking = child.stdout.readline()
    assert asking.startswith("asking"), child.communicate(timeout=CHILD_TIMEOUT_S)[1][-2000:]
    return child


def _waits_or_holds(child: subprocess.Popen, waiting: Callable[[int], bool]) -> str:
    """"waiting" once `child` provably waits for the lock (`waiting` says so), "holding" once it says it holds it,
    whichever comes first: an outcome the order of events decides, not a clock (the deadline only ends a hang)."""
    assert child.stdout is not None
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while time.monotonic() < deadline:
        if waiting(child.pid):
            return "waiting"
        if select.select([child.stdout], [], [], 0.01)[0]:
            line = child.stdout.readline()
            assert line.startswith("holding"), (line, child.communicate(timeout=CHILD_TIMEOUT_S)[1][-2000:])
            return "holding"
    child.kill()
    raise AssertionError(f"the child neither waited for the lock nor got it in {CHILD_TIMEOUT_S:g} s")


def tiny_graph(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Write ``y = x @ W + b`` (x: 1x4, y: 1x3) to `path`; return its feeds and the output numpy computes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    # An old opset and IR version: every ONNX Runtime LTS supports reads them.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    onnx.save(model, str(path))
    x = rng.standard_normal((1, 4)).astype(np.float32)
    return {"x": x}, x @ w + b


def _child_env(tmp: Path) -> dict[str, str]:
    """This environment with the temp folder at `tmp` (where a target keeps its machine-wide lock file)."""
    return dict(os.environ, TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp))


def _other_precision(precision: str) -> str:
    return next(p for p in PRECISIONS if p != precision)


def protocol_variants(target: Target) -> dict[str, Target]:
    """Copies of a dataclass `target` differing in one of the Protocol's settings: threads, precision, and
    name (which names the provider)."""
    return {"threads": dataclasses.replace(target, threads=target.threads + 1),
            "precision": dataclasses.replace(target, precision=_other_precision(target.precision)),
            "name (provider)": dataclasses.replace(target, name=target.name + "-other")}


class TargetContract:
    """The clauses every :class:`~lts.cost.target.Target` keeps. Fixture to provide: ``target``."""

    @pytest.fixture
    def target_variants(self, target: Target) -> dict[str, Target]:
        """Copies of `target` that differ in one setting that changes measured values, by what differs.

        Default: :func:`protocol_variants`. Override to add a target's own settings (e.g. CPUTarget's graph
        optimisation level); a target that is not a dataclass must override it.
        """
        if not dataclasses.is_dataclass(target):
            pytest.skip(f"{type(target).__name__} is not a dataclass: override the target_variants fixture")
        return protocol_variants(target)

    @pytest.fixture
    def isolated_tmp(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        """A temp folder of this test's own, in this process and its children: a lock file kept there is this
        test's alone, so a measurement running elsewhere on the machine neither blocks nor fools the lock tests."""
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        for name in ("TMPDIR", "TEMP", "TMP"):
            monkeypatch.setenv(name, str(tmp_path))
        return tmp_path

    # ---- what it is
    def test_is_a_target_with_valid_settings(self, target: Target) -> None:
        assert isinstance(target, Target), "does not implement every member of the Target protocol"
        assert isinstance(target.name, str) and target.name
        assert isinstance(target.threads, int) and not isinstance(target.threads, bool) and target.threads > 0
        assert target.precision in PRECISIONS

    def test_is_frozen(self, target: Target) -> None:
        with pytest.raises((AttributeError, TypeError)):  # dataclasses.FrozenInstanceError is an AttributeError
            target.threads = target.threads + 1  # type: ignore[misc]

    def test_pickles_to_the_same_target(self, target: Target) -> None:
        copy = pickle.loads(pickle.dumps(target))
        assert copy.key() == target.key()
        assert copy.fingerprint() == target.fingerprint()
        assert copy.describe() == target.describe()

    # ---- key(): the settings part of every cache key
    def test_key_is_plain_data_and_stable(self, target: Target) -> None:
        key = target.key()
        assert isinstance(key, dict) and key
        assert json.loads(json.dumps(key, sort_keys=True)) == key, "key() must be JSON data (it is hashed)"
        assert target.key() == key, "two calls gave two keys"

    def test_key_differs_when_a_measured_setting_differs(self, target: Target,
                                                         target_variants: dict[str, Target]) -> None:
        same = [what for what, other in target_variants.items() if other.key() == target.key()]
        assert not same, f"key() does not change with: {', '.join(same)} (a stale figure would be served)"

    # ---- fingerprint(): the hardware part of every cache key
    def test_fingerprint_is_plain_data_with_a_short_id(self, target: Target) -> None:
        fp = target.fingerprint()
        assert json.loads(json.dumps(fp, sort_keys=True)) == fp, "fingerprint() must be JSON data (it is stored)"
        assert isinstance(fp["id"], str) and 4 <= len(fp["id"]) <= 16, fp["id"]
        assert len(fp) > 1, "the fingerprint must say what the hardware is, besides its id"

    def test_fingerprint_is_the_hardwares_not_the_settings(self, target: Target) -> None:
        """Figures measured with other threads or precision are told apart by key(), not by the hardware id."""
        if not dataclasses.is_dataclass(target):
            pytest.skip(f"{type(target).__name__} is not a dataclass")
        for other in (dataclasses.replace(target, threads=target.threads + 1),
                      dataclasses.replace(target, precision=_other_precision(target.precision))):
            assert other.fingerprint() == target.fingerprint()

    def test_key_and_fingerprint_are_the_same_in_another_process(self, target: Target) -> None:
        """Ray nodes fingerprint themselves in their own processes, and a cache outlives its process."""
        proc = subprocess.run([sys.executable, "-c", _IDENTITY_CHILD, pickle.dumps(target).hex()],
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        assert proc.returncode == 0, proc.stderr[-2000:]
        there = json.loads(proc.stdout)
        assert there == json.loads(json.dumps({"key": target.key(), "fingerprint": target.fingerprint()}))

    # ---- describe()
    def test_describe_is_one_line_naming_provider_threads_and_precision(self, target: Target, tmp_path: Path) -> None:
        line = target.describe()
        assert isinstance(line, str) and line.strip() and "\n" not in line
        tiny_graph(tmp_path / "tiny.onnx")
        provider = target.session(tmp_path / "tiny.onnx").get_providers()[0]
        assert provider in line, f"describe() does not name the provider sessions run on ({provider}): {line}"
        assert f"{target.threads} thread" in line, line
        if target.precision != "fp32":
            assert target.precision in line, line
        if dataclasses.is_dataclass(target):
            assert dataclasses.replace(target, threads=target.threads + 1).describe() != line

    # ---- session()
    def test_session_runs_a_tiny_graph(self, target: Target, tmp_path: Path) -> None:
        feeds, expected = tiny_graph(tmp_path / "tiny.onnx")
        (out,) = target.session(tmp_path / "tiny.onnx").run(None, feeds)
        assert out.shape == expected.shape == (1, 3)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)

    def test_session_uses_the_targets_threads(self, target: Target, tmp_path: Path) -> None:
        tiny_graph(tmp_path / "tiny.onnx")
        options = target.session(tmp_path / "tiny.onnx").get_session_options()
        assert options.intra_op_num_threads == target.threads

    def test_session_without_spin_lets_its_threads_sleep(self, target: Target, tmp_path: Path) -> None:
        tiny_graph(tmp_path / "tiny.onnx")
        entry = "session.intra_op.allow_spinning"
        quiet = target.session(tmp_path / "tiny.onnx", spin=False).get_session_options()
        assert quiet.get_session_config_entry(entry) == "0"
        spinning = target.session(tmp_path / "tiny.onnx").get_session_options()
        try:
            allowed = spinning.get_session_config_entry(entry)
        except RuntimeError:  # not set: ONNX Runtime's default, which spins
            allowed = "1"
        assert allowed != "0", "spin=True (the default) must not stop the threads spinning"

    # ---- lock()
    def lock_waiter(self, pid: int) -> bool:
        """Whether process `pid` is waiting for this target's lock. Default: the kernel lists it as waiting for a
        file lock (Linux); a target whose lock is not a file lock overrides this."""
        try:
            return pid in file_lock_waiters()
        except OSError:  # no /proc/locks (macOS): whether a process waits cannot be seen
            pytest.skip("no /proc/locks here: override lock_waiter to show a process waits for the lock")

    def test_exclusive_lock_keeps_another_process_out(self, target: Target, isolated_tmp: Path) -> None:
        """...even one measuring with other settings: one lock per machine, not per target. The other process must
        be seen waiting while the lock is held, and get it only once it is let go."""
        other = dataclasses.replace(target, threads=target.threads + 1) if dataclasses.is_dataclass(target) else target
        released = isolated_tmp / "released"
        with target.lock(True):
            child = _lock_child(other, "shared", released, isolated_tmp)
            state = _waits_or_holds(child, self.lock_waiter)
            released.touch()  # still held: a process that holds the lock from here on must find this file
        out, err = child.communicate(timeout=CHILD_TIMEOUT_S)
        assert state == "waiting", f"the other process got the lock while it was held exclusively: {out}"
        assert child.returncode == 0, err[-2000:]
        assert out.split() == ["holding", "released"], out

    def test_shared_locks_are_held_together_across_processes(self, target: Target, isolated_tmp: Path) -> None:
        released = isolated_tmp / "released"
        with target.lock(False):
            child = _lock_child(target, "shared", released, isolated_tmp)
            state = _waits_or_holds(child, self.lock_waiter)
            released.touch()
        out, err = child.communicate(timeout=CHILD_TIMEOUT_S)
        assert state == "holding", "a shared lock kept another shared holder waiting"
        assert child.returncode == 0, err[-2000:]

    # ---- memory
    def test_memory_bytes_sees_an_allocation(self, target: Target) -> None:
        size = 64 * 2**20
        before = target.memory_bytes()
        block = np.ones(size // 8)  # touched: resident, not just reserved
        grown = target.memory_bytes() - before
        del block
        assert grown > 0.8 * size, f"memory_bytes() grew by {grown} bytes for a {size}-byte allocation"

    def test_peak_memory_window_starts_at_reset(self, target: Target) -> None:
        """reset_peak_memory() True: the peak since then includes a freed allocation, and a new reset forgets it."""
        size = 64 * 2**20
        if not target.reset_peak_memory():
            pytest.skip(f"{target.describe()}: samples memory from outside (reset_peak_memory() is False)")
        block = np.ones(size // 8)
        del block
        baseline = target.memory_bytes()
        assert target.peak_memory_bytes() - baseline > 0.8 * size, "the peak missed a freed 64 MiB allocation"
        assert target.reset_peak_memory()
        assert target.peak_memory_bytes() - target.memory_bytes() < 0.5 * size, "a reset did not start a new window"


__all__ = ["TargetContract", "protocol_variants", "tiny_graph"]
