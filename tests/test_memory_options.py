"""benchmarks/memory_options.py on a tiny graph: each option set makes a session that runs, in a fresh child, with
both phases' peaks; the fit recovers known coefficients; bad flags are one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import memory_options as mo
from lts.cost.scratch import scratch_folders
from lts.cost.target import CPUTarget
from lts.families.gpt2 import ArchConfig

REPO = Path(__file__).resolve().parent.parent
TINY = ArchConfig(2, 64, 128, 2, vocab_size=512, n_positions=64)


def test_every_option_set_measures_both_phases():
    args = type("Args", (), {"timeout": 60.0})()
    with scratch_folders(2**20) as scratch:
        got = mo.measure_arch(TINY, 32, list(mo.OPTIONS), 1, {"default"}, args, CPUTarget(threads=1), scratch)
    assert list(got) == list(mo.OPTIONS)
    assert [m["history"] for m in got["default"]] == [False, True]  # a fresh child, then one with a freed block
    for option, runs in got.items():
        for m in runs:
            assert set(m) == {"load", "after_load", "run", "after_run", "history"}, option
            assert m["load"] >= m["after_load"] > 0 and m["run"] >= m["after_run"], (option, m)


def test_fit_recovers_non_negative_coefficients_leave_one_out():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(1e7, 1e9, 12), rng.uniform(1e5, 1e7, 12), np.ones(12)])
    y = x @ np.array([1.5, 3.0, 2e7])
    assert np.allclose(mo.nnls_fit(x, y), [1.5, 3.0, 2e7], rtol=1e-6)
    quality = mo.fit_quality(mo.loo_predictions(x, y), y)
    assert quality["worst"] < 1e-6 and quality["spearman"] == pytest.approx(1.0)
    two = mo.fits({"f": x}, y, y / 2)  # the load phase sets every peak
    assert two["f"]["worst"] < 1e-6 and two["f, two-phase"]["worst"] < 1e-6


def test_features_add_the_largest_weight():
    f = mo.features(TINY, 32)
    assert f["1"] == 1.0 and f["largest_weight_bytes"] == 4 * 512 * 64  # the embedding


@pytest.mark.parametrize("flags, says", [(["--options", "bogus"], "unknown option set(s) bogus"),
                                         (["--seq-len", "0"], "--seq-len out of range")])
def test_bad_flags_are_one_line_and_exit_2(flags, says):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory_options", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
