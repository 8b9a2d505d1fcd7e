"""Model families: the registry, records, and a second family searched, stored and measured through the protocol."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from clirun import run_cli
from searchrun import DETERMINISTIC, REPO, rows

from lts.core.errors import LTSError
from lts.families import Arch, Family, arch_from_dict, families, family, family_of_config, to_record, with_fields
from lts.families.gpt2 import FAMILY, ArchConfig
from lts.search.space import space_from_dict, space_to_dict

TOY = Path(__file__).with_name("toy_family.py")


def test_gpt2_is_discovered_and_keeps_its_protocols():
    # the toy family is only installed in its own test's processes
    assert [f.name for f in families()] == ["gpt2", "llama"]
    assert family("gpt2") is FAMILY and isinstance(FAMILY, Family)
    assert isinstance(ArchConfig(2, 64, 128, 2), Arch)
    assert isinstance(ArchConfig(2, 64, [128, 256], [2, 4]), Arch)


def test_unknown_family_or_model_type_is_one_line():
    with pytest.raises(LTSError, match="unknown model family 'nope' \\(known: gpt2, llama\\)"):
        arch_from_dict({"family": "nope", "n_layer": 1})
    known = "the model families LTS knows are GPT-2 \\('gpt2', 'lts_gpt2'\\); Llama \\('llama'\\)"
    with pytest.raises(LTSError, match=f"cfg.json: model_type is 'bert'; {known}"):
        family_of_config({"model_type": "bert"}, source="cfg.json")
    with pytest.raises(LTSError, match="expected a JSON object, got list"):
        arch_from_dict([1, 2])


def test_records_round_trip_and_gpt2_records_stay_as_they_were():
    for arch in (ArchConfig(3, 256, 1024, 4), ArchConfig(2, 64, [128, 256], [2, 4], vocab_size=1000)):
        record = to_record(arch)
        assert record == arch.to_dict() and "family" not in record  # every record and id ever written reads as before
        assert arch_from_dict(json.loads(json.dumps(record))) == arch
    wider = with_fields(ArchConfig(3, 256, 1024, 4), vocab_size=777)
    assert wider == ArchConfig(3, 256, 1024, 4, vocab_size=777)
    with pytest.raises(LTSError, match="n_layer must be positive"):
        with_fields(ArchConfig(3, 256, 1024, 4), n_layer=0)


def test_a_space_names_its_family():
    assert space_to_dict(space_from_dict({})) == space_to_dict(space_from_dict({"family": "gpt2"}))
    assert "family" not in space_to_dict(space_from_dict({}))  # job.json of a GPT-2 search reads as before
    with pytest.raises(LTSError, match="unknown model family 'opt'"):
        space_from_dict({"family": "opt"})


@pytest.fixture
def toy_site(tmp_path: Path) -> Path:
    """A folder where the toy family is installed as a plugin: its module and a dist-info naming the entry point."""
    site = tmp_path / "site"
    info = site / "lts_toy_family-1.0.dist-info"
    info.mkdir(parents=True)
    shutil.copy(TOY, site / "toy_family.py")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lts-toy-family\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[lts.families]\ntoy = toy_family:FAMILY\n")
    return site


def test_a_second_family_is_searched_stored_and_measured_through_the_protocol(tmp_path, toy_site):
    """A family installed beside LTS (entry point), with its own fields, ids and columns: search.py finds its front,
    models/ reads back as the same archids, the gallery shows its columns, a resumed search re-measures nothing,
    and `lts evaluate` times it (composed and whole) in measuring children that read it back from its record."""
    env = {**os.environ, "PYTHONPATH": str(toy_site)}
    (tmp_path / "toy.yaml").write_text("space:\n  family: toy\n  n_layer: [1, 2, 3]\n  n_embd: [32, 48, 64]\n")
    search = [REPO / "search.py", "--config", tmp_path / "toy.yaml", "--objectives", DETERMINISTIC,
              "--generations", 2, "--population", 4, "--run-dir", tmp_path / "run", "--out", tmp_path / "models",
              "--assets-dir", tmp_path / "assets", "--cache", tmp_path / "cache.sqlite", "--no-progress"]
    r = run_cli([str(a) for a in search], cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    evaluated = rows(tmp_path / "run" / "evaluations.csv")
    assert evaluated and all(row["archid"].startswith("toy_") for row in evaluated)
    assert {"n_layer", "n_embd"} <= set(evaluated[0]) and "n_head" not in evaluated[0]
    members = [p for p in (tmp_path / "models").iterdir() if p.is_dir()]
    assert members and all(p.name.startswith("toy_") for p in members)
    job = json.loads((tmp_path / "run" / "job.json").read_text())
    assert job["space"]["family"] == "toy"
    gallery = (tmp_path / "models" / "README.md").read_text()
    assert "| depth | width |" in gallery and "n_head" not in gallery
    assert "<th title=\"click to sort\">depth</th>" in (tmp_path / "run" / "report.html").read_text()

    resumed = run_cli([str(a) for a in search] + ["--resume"], cwd=tmp_path, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows(tmp_path / "run" / "evaluations.csv") == evaluated  # nothing re-measured, nothing lost

    member = min(members, key=lambda p: p.name)
    cmd = ["-m", "lts", "evaluate", str(member), "--no-generation", "--no-cache", "--json", "--seq-len", "16"]
    out = run_cli(cmd, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout)
    assert got["archid"] == member.name and got["config"]["family"] == "toy"
    assert got["onnx_latency_s"] > 0 and got["onnx_memory_mb"] > 0
    assert got["non_embedding_params"] == json.loads((member / "metrics.json").read_text())["non_embedding_params"]


def test_without_the_plugin_a_toy_folder_is_one_line(tmp_path):
    """A folder of a family this installation does not have: one line, exit 2 (not GPT-2's fields misread)."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "family": "toy", "n_layer": 1,
                                                    "n_embd": 32, "n_head": 2, "vocab_size": 512}))
    r = run_cli(["-m", "lts", "evaluate", str(folder), "--no-generation", "--no-cache"], cwd=tmp_path,
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=300)
    assert r.returncode == 2 and "unknown model family 'toy' (known: gpt2, llama)" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
