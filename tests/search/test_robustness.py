"""A search never loses finished work and never destroys what it did not replace.

Faults are real (a SIGKILL, a hung or dying measuring process, an exception) and placed
exactly with ``LTS_FAULT`` (``lts.core.faults``), so every test here is deterministic.
"""

import hashlib
import json
import signal
from pathlib import Path

import pytest
from searchrun import DETERMINISTIC, TINY_SPACE, concurrent_searches, rows, search

from lts.cost.evaluator import EvalResult
from lts.cost.objectives import Measurement, Timing
from lts.families.gpt2 import ArchConfig
from lts.search.fronts import robust_front
from lts.search.report import MANIFEST, read_manifest, write_models


def record(run: Path) -> list[dict]:
    out = []
    for line in (run / "evaluations.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut by the kill
            pass
    return out


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.heavy
def test_a_run_where_every_candidate_fails_exits_1_and_leaves_models_and_plots(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    ok = search(tmp_path, "--config", "tiny.yaml", "--generations", 1, "--population", 6, "--seq-len", 8,
                "--threads", 1)
    assert ok.returncode == 0, ok.stderr[-2000:]
    before = {"models": tree(tmp_path / "models"), "assets": tree(tmp_path / "assets")}
    assert len(before["models"]) > 3 and before["assets"]

    r = search(tmp_path, "--config", "tiny.yaml", "--generations", 2, "--population", 4, "--seq-len", 8, "--seed", 5,
               "--timeout", 0.001, name="failing", cache="empty.sqlite")
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "every candidate failed" in last and "timeout after 0.001s" in last and "Traceback" not in r.stderr
    assert {"models": tree(tmp_path / "models"), "assets": tree(tmp_path / "assets")} == before
    failures = record(tmp_path / "failing")
    assert failures and all(f["status"].startswith("failed: timeout") for f in failures)
    page = (tmp_path / "failing" / "report.html").read_text()  # the run folder's own page lists why
    assert "timeout after 0.001s" in page and "0 succeeded" in page

    # Nothing failed was cached: the same search without the tiny timeout measures every candidate.
    again = search(tmp_path, "--config", "tiny.yaml", "--generations", 2, "--population", 4, "--seq-len", 8,
                   "--seed", 5, name="again", cache="empty.sqlite")
    assert again.returncode == 0 and " 0 from cache" in again.stdout.replace("(0 from", " 0 from"), again.stdout
    assert all(e["status"] == "ok" for e in rows(tmp_path / "again" / "evaluations.csv"))


@pytest.mark.parametrize("fault", ["evaluated:kill@13", "checkpoint:kill@2", "models:kill@2"],
                         ids=["during-evaluations", "writing-checkpoint", "writing-models"])
@pytest.mark.heavy
def test_sigkill_then_resume_from_the_run_folder_alone_matches_the_uninterrupted_run(tmp_path, fault):
    args = ("--objectives", DETERMINISTIC, "--generations", 4, "--population", 6, "--seed", 3)
    straight = search(tmp_path, *args, name="straight", cache="straight.sqlite")
    assert straight.returncode == 0, straight.stderr[-2000:]
    expected_models = tree(tmp_path / "models")
    for p in sorted((tmp_path / "models").iterdir(), reverse=True):  # start the killed run from an empty folder
        if p.is_dir():
            for f in p.iterdir():
                f.unlink()
            p.rmdir()
        else:
            p.unlink()

    killed = search(tmp_path, *args, name="killed", fault=fault, cache="first.sqlite")
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    done = {e["archid"] for e in record(tmp_path / "killed")}
    assert done
    if fault.startswith("models"):
        assert not (tmp_path / "models" / MANIFEST).exists()  # the swap never happened: no half front is shown

    # Resume with another (empty) cache: the run folder alone must carry every finished result.
    resumed = search(tmp_path, "--resume", "--run-dir", tmp_path / "killed", name="killed", cache="second.sqlite")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = record(tmp_path / "killed")
    computed = [e["archid"] for e in lines if not e["cached"]]
    assert len(computed) == len(set(computed)), "a finished evaluation was done twice"
    assert done <= set(computed)
    evals = rows(tmp_path / "killed" / "evaluations.csv")
    assert [e["archid"] for e in evals] == [e["archid"] for e in rows(tmp_path / "straight" / "evaluations.csv")]
    assert sorted(e["archid"] for e in rows(tmp_path / "killed" / "pareto.csv")) == \
        sorted(e["archid"] for e in rows(tmp_path / "straight" / "pareto.csv"))
    after = tree(tmp_path / "models")
    strip = {k: v for k, v in after.items() if k.endswith("config.json")}
    assert strip == {k: v for k, v in expected_models.items() if k.endswith("config.json")}


@pytest.mark.heavy
def test_evaluations_that_raise_hang_or_die_are_recorded_failures_and_the_search_finishes(tmp_path):
    # Seed 1's first generation in this space (it does not depend on the objectives' values):
    # 5319b9e14c78 84d0c5f638d1 14acaeed3c96 e72054e00c5d c772f8cc8352 2d66aa360568 23f73bd7e060 5bb9932fa95d
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    fault = "evaluate:raise:gpt2_84,measure:hang:gpt2_e7,measure:exit:gpt2_2[3d]"
    r = search(tmp_path, "--config", "tiny.yaml", "--generations", 1, "--population", 8, "--seq-len", 8,
               "--threads", 1, "--timeout", 30, fault=fault)  # legit ones take < 1 s idle
    assert r.returncode == 0, r.stderr[-2000:]
    reasons = {e["archid"][5:9]: e["status"] for e in rows(tmp_path / "run" / "evaluations.csv")}
    assert reasons == {
        "5319": "ok", "14ac": "ok", "c772": "ok", "5bb9": "ok",
        "84d0": "failed: RuntimeError: injected fault at evaluate",
        "e720": "failed: timeout after 30s",
        "2d66": "failed: measuring process crashed: exited with status 3",
        "23f7": "failed: measuring process crashed: exited with status 3",
    }
    assert len(rows(tmp_path / "run" / "pareto.csv")) >= 1 and (tmp_path / "models" / MANIFEST).is_file()


@pytest.mark.heavy
def test_two_searches_into_one_models_folder_never_crash_or_lose_members(tmp_path):
    """Same models/ and cache, different fronts, truly concurrent (both read models/ before either writes it):
    both finish and models/ holds exactly the union of their fronts, each member credited to its run."""
    runs = concurrent_searches(tmp_path, (1, 2), "--objectives", DETERMINISTIC, "--generations", 3,
                               "--population", 6)
    fronts = [{e["archid"] for e in rows(run / "pareto.csv")} for run in runs]
    # Seeds 1 and 2 find disjoint fronts (12 and 13 members; each found alone the same): each run placed members
    # the other did not, so a run that dropped what it did not place would lose some, whichever wrote last.
    assert not fronts[0] & fronts[1] and (len(fronts[0]), len(fronts[1])) == (12, 13)
    members = {p.name for p in (tmp_path / "models").iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert members == fronts[0] | fronts[1] == set(read_manifest(tmp_path / "models"))
    credited = read_manifest(tmp_path / "models")
    for run, front in zip(runs, fronts):
        assert {credited[a] for a in front - (fronts[0] & fronts[1])} <= {c for c in credited.values()
                                                                           if c.startswith(run.name)}


def _result(params, latency, cv=0.0, memory_mib=10.0):
    config = ArchConfig(1, 32, 64, 2, vocab_size=64 + params, n_positions=64)  # distinct archids
    m = Measurement({"memory": {"bytes": int(memory_mib * 2**20), "sampled_bytes": None},
                     "latency": {"full": Timing(latency, cv, 5)}})
    return EvalResult(config.archid, config, {"non_embedding_params": params, "onnx_latency_s": latency,
                                              "onnx_memory_mb": memory_mib}, measurement=m)


def test_concurrent_runs_keep_each_others_members_and_a_later_run_replaces_both(tmp_path):
    models = tmp_path / "models"
    a, b, c = _result(10, 1.0), _result(20, 2.0), _result(30, 3.0)
    readme = lambda members: f"{len(members)} members\n"  # noqa: E731
    started = read_manifest(models)  # both A and B start before either writes
    write_models([a], models, {}, "A", started, set(), readme)
    write_models([b], models, {}, "B", started, set(), readme)
    assert read_manifest(models) == {a.archid: "A", b.archid: "B"}
    assert (models / a.archid).is_dir() and (models / b.archid).is_dir()
    (models / b.archid / "weights.bin").write_bytes(b"trained")  # a user's file in a member folder
    write_models([c], models, {}, "C", read_manifest(models), set(), readme)  # C started after both: replaces them
    assert read_manifest(models) == {c.archid: "C"}
    assert not (models / a.archid).exists()
    assert (models / b.archid / "weights.bin").read_bytes() == b"trained"  # never deleted what it did not write
    assert (models / "README.md").read_text() == "1 members\n"


def test_robust_front_treats_differences_within_noise_as_ties():
    small_fast = _result(10, 1.00, cv=0.01)
    bigger_same_speed = _result(20, 1.03, cv=0.02)   # slower by 3 %, within 2 x noise: a tie
    bigger_slower = _result(30, 1.50, cv=0.02)       # slower beyond the noise: a real trade-off
    objs = ("non_embedding_params", "onnx_latency_s")
    front = [small_fast, bigger_same_speed, bigger_slower]
    # bigger_same_speed is better in params beyond noise and tied in latency: it dominates small_fast.
    assert robust_front(front, objs) == {bigger_same_speed.archid, bigger_slower.archid}
    exact = [_result(10, 1.00), _result(20, 1.03)]
    assert robust_front(exact, objs) == {r.archid for r in exact}  # no noise: the plain front
