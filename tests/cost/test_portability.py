"""Measurement where users run it: a small /dev/shm, no kernel peak counter, other platforms, other users."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lts.core.errors import LTSError
from lts.cost.measure import measure_architecture
from lts.cost.settings import MeasureSettings
from lts.cost.target import CPUTarget, check_measurable
from lts.families.gpt2 import ArchConfig

REPO = Path(__file__).resolve().parents[2]
BIG_VOCAB = ArchConfig(2, 64, 128, 2, vocab_size=200_000, n_positions=64)  # ~49 MiB of embeddings


def _can_mount_private_tmpfs() -> str | None:
    """None when this process may mount a tmpfs in a private mount namespace, else why not."""
    if not sys.platform.startswith("linux"):
        return "needs Linux mount namespaces"
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs (run as root, or in a container with CAP_SYS_ADMIN)"
    if not shutil.which("unshare"):
        return "needs util-linux unshare"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"this machine refuses a private mount namespace: {probe.stderr.strip()[:200]}"
    return None


@pytest.mark.heavy
def test_a_model_larger_than_a_64mb_dev_shm_is_measured(tmp_path):
    """Docker's default /dev/shm is 64 MB: the graph goes to disk instead, and the measurement is the same."""
    why = _can_mount_private_tmpfs()
    if why:
        pytest.skip(why)
    config = ArchConfig(2, 512, 2048, 8)  # the full 50257-token vocabulary: a ~130 MB graph
    folder = tmp_path / config.archid
    config.to_hf_config().save_pretrained(folder)
    script = (f"mount -t tmpfs -o size=64m tmpfs /dev/shm && "
              f"{sys.executable} -m lts evaluate {folder} --seq-len 64 --threads 1 --no-cache --json && "
              f"df -k /dev/shm | tail -1 && ls -A /dev/shm | wc -l")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.strip().splitlines()
    data = json.loads("\n".join(out[:-2]))
    assert data["status"] == "ok", data["status"]
    assert data["onnx_file_mb"] > 64 and data["onnx_memory_mb"] > data["onnx_file_mb"] * 0.9
    assert int(out[-2].split()[1]) == 64 * 1024  # it really ran with a 64 MB /dev/shm ...
    assert out[-1] == "0"  # ... and left nothing in it


@pytest.mark.heavy
def test_sampled_memory_probe_works_without_the_kernel_peak_counter():
    """Where /proc is missing (macOS) the peak comes from sampling the child's RSS from outside (psutil)."""
    settings = MeasureSettings(seq_len=16, min_repeats=2, max_repeats=3, warmup=1)
    exact = measure_architecture(BIG_VOCAB, settings, CPUTarget(threads=1), parts=())
    sampled = measure_architecture(BIG_VOCAB, settings, CPUTarget(threads=1, memory_probe="sampled"), parts=())
    peak, exact_peak = sampled.get("memory"), exact.get("memory")
    assert peak["bytes"] == peak["sampled_bytes"]  # the sampled figure is the result
    assert peak["bytes"] > 40 * 2**20 and exact_peak["bytes"] > 40 * 2**20  # both see the embeddings
    assert CPUTarget(memory_probe="sampled").key() != CPUTarget().key()  # never served for one another


def test_unsupported_platform_is_one_clear_error():
    for name in ("linux", "darwin"):
        check_measurable(name)
    with pytest.raises(LTSError, match="Linux and macOS, not on win32.*non_embedding_params,onnx_file_mb"):
        check_measurable("win32")
