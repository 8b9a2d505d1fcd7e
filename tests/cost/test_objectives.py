"""The Objective registry drives every output, and the cache key; a Target's fingerprint keys the cache too."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lts.cost import objectives
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.cost.objectives import Objective, objectives_help, parse_objectives, register, unregister
from lts.cost.target import TARGETS, CPUTarget, Target, cpu_fingerprint, make_target
from lts.families.gpt2 import ArchConfig

REPO = Path(__file__).resolve().parents[2]
TINY = ArchConfig(2, 64, 128, 2, vocab_size=512, n_positions=64)
SPACE = {"n_layer": [1, 2, 3], "n_embd": [32, 64], "n_inner": [64, 128], "n_head": [2, 4], "vocab_size": 512,
         "n_positions": 64}


def _heads_x_layers(config: ArchConfig, measurement: objectives.Measurement) -> float:
    return float(config.n_head * config.n_layer)


@pytest.fixture
def dummy():
    """One objective added in one place (a register call), removed afterwards."""
    obj = register(Objective("heads_x_layers", "heads", +1, "attention heads in all layers", compute=_heads_x_layers,
                             display_unit="heads", fmt=".0f"))
    yield obj
    unregister(obj.name)


def test_a_registered_objective_flows_to_csv_gallery_plots_help_and_printout(dummy, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from lts.search.job import SearchJob, run_job

    labels = []
    real_savefig = Figure.savefig

    def spy(fig, *args, **kwargs):
        labels.extend((ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes)
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    assert "heads_x_layers" in objectives_help()
    assert parse_objectives("non_embedding_params,heads_x_layers") == ("non_embedding_params", "heads_x_layers")
    job = SearchJob(generations=2, population=4, seq_len=16, objectives="non_embedding_params,heads_x_layers",
                    space=SPACE, run_dir=str(tmp_path / "run"), models_dir=str(tmp_path / "models"),
                    assets_dir=str(tmp_path / "assets"), cache=str(tmp_path / "c.sqlite"))
    out = run_job(job, progress=False)
    assert not job.search_settings().needs_measurement  # a pure function of the config: nothing is timed

    with open(out.files["evaluations"]) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        assert float(row["heads_x_layers"]) == int(row["n_head"]) * int(row["n_layer"])
    gallery = (tmp_path / "run" / "gallery.md").read_text()
    assert "attention heads in all layers (heads)" in gallery.splitlines()[0]
    plot = tmp_path / "assets" / "pareto_non_embedding_params_vs_heads_x_layers.png"
    assert plot in out.files["plots"] and plot.read_bytes().startswith(b"\x89PNG")
    assert ("non-embedding parameters (millions)", "attention heads in all layers (heads)") in labels
    front = out.front_ids[0]
    metrics = json.loads((tmp_path / "models" / front / "metrics.json").read_text())
    assert metrics["heads_x_layers"] == next(float(r["heads_x_layers"]) for r in rows if r["archid"] == front)


@pytest.mark.heavy
def test_evaluate_printout_lists_every_registered_objective(tmp_path):
    folder = tmp_path / TINY.archid
    TINY.to_hf_config().save_pretrained(folder)
    r = subprocess.run([sys.executable, "-m", "lts", "evaluate", str(folder), "--seq-len", "16", "--threads", "1",
                        "--no-cache"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    for name in objectives.REGISTRY:
        assert any(line.startswith(name + " ") for line in r.stdout.splitlines()), name


def test_a_new_or_changed_objective_is_never_served_a_stale_cached_value(tmp_path):
    settings = EvalSettings.create(on_target=False)
    cache = tmp_path / "c.sqlite"
    first = Evaluator(settings, cache).evaluate(TINY)
    assert Evaluator(settings, cache).cached(TINY) is not None
    obj = register(Objective("heads_x_layers", "heads", +1, "heads", compute=_heads_x_layers))
    try:
        assert Evaluator(settings, cache).cached(TINY) is None  # the stored result has no value for it
        fresh = Evaluator(settings, cache).evaluate(TINY)
        assert fresh["heads_x_layers"] == 4.0 and not fresh.cached
        # The same name computed differently (its version bumped, as a change of compute requires) is a
        # changed objective: not served either.
        register(dataclasses.replace(obj, compute=lambda c, m: float(c.n_head), version=2))
        assert Evaluator(settings, cache).cached(TINY) is None
    finally:
        unregister("heads_x_layers")
    again = Evaluator(settings, cache).evaluate(TINY)
    assert again.cached and again.values == first.values


def test_cpu_target_keeps_the_target_contract_and_keys_the_cache(tmp_path):
    target = make_target("cpu", 1)
    assert isinstance(target, Target) and target.threads == 1
    assert target.fingerprint()["id"] == cpu_fingerprint()["id"] and target.describe()
    assert TARGETS["cpu"] is CPUTarget

    @dataclasses.dataclass(frozen=True)
    class OtherMachine(CPUTarget):
        name: str = "other"

        def fingerprint(self) -> dict:
            return {**super().fingerprint(), "id": "elsewhere"}

    cache = tmp_path / "c.sqlite"
    Evaluator(EvalSettings.create(on_target=False, threads=1), cache).evaluate(TINY)
    assert Evaluator(EvalSettings.create(on_target=False, target=OtherMachine(threads=1)), cache).cached(TINY) is None
    # More threads measure differently: another key as well.
    assert Evaluator(EvalSettings.create(on_target=False, threads=2), cache).cached(TINY) is None
    assert Evaluator(EvalSettings.create(on_target=False, threads=1), cache).cached(TINY) is not None


def test_the_lts_console_command_gives_one_line_on_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code = ("import sys; from lts.__main__ import console; sys.argv = ['lts', 'evaluate', sys.argv[1]]; "
            "sys.exit(console())")
    r = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("lts evaluate: error:"), r.stderr
