"""SearchJob: the settings a resumed run may change, the nested settings it builds, the job.json it reads back."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import pytest

from lts.core.errors import LTSError
from lts.core.settings import resumable
from lts.search.checkpoint import CHECKPOINT
from lts.search.job import JOB_FILE, SearchJob, prepare

# What a resumed run may change: where it writes and how it runs, nothing its results depend on.
RESUMABLE = {"generations", "workers", "engine", "ray_address", "timeout_s", "models_dir", "assets_dir", "cache"}


def test_a_resume_may_change_only_where_it_writes_and_how_it_runs():
    assert resumable(SearchJob) == RESUMABLE


def test_a_resume_refuses_any_other_change_and_takes_the_declared_ones(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / CHECKPOINT).write_bytes(b"")  # prepare only looks for it
    (run / JOB_FILE).write_text(json.dumps(asdict(SearchJob(seed=3, run_dir=str(run)))))
    with pytest.raises(LTSError, match=r"cannot change seed when resuming .* \(only assets_dir, cache, engine, "
                                       r"generations, models_dir, ray_address, timeout_s, workers may change\)"):
        prepare(SearchJob(seed=4, run_dir=str(run)), resume=True, given={"seed", "run_dir"})
    given = SearchJob(seed=3, generations=9, workers=2, population=8, run_dir=str(run))
    job, _ = prepare(given, resume=True, given={"seed", "generations", "workers", "run_dir"})
    assert (job.seed, job.generations, job.workers, job.population) == (3, 9, 2, 36)  # population not given


def test_the_nested_settings_take_the_jobs_values():
    job = SearchJob(generations=3, population=4, seed=5, seq_len=7, context=9, timeout_s=3.0, threads=2,
                    precision="int8", latency_mode="full", objectives="non_embedding_params,onnx_latency_s",
                    constraints=["onnx_memory_mb<=300"])
    search = job.search_settings()
    assert (search.generations, search.population, search.seed, search.strategy) == (3, 4, 5, "nsga2")
    assert search.objectives == ("non_embedding_params", "onnx_latency_s")
    assert [str(c) for c in search.constraints] == ["onnx_memory_mb<=300"]
    evaluation = job.eval_settings()
    measure = evaluation.measure_settings
    assert (measure.seq_len, measure.context, measure.timeout_s) == (7, 9, 3.0)
    assert (evaluation.target.name, evaluation.target.threads, evaluation.target.precision) == ("cpu", 2, "int8")
    assert evaluation.latency_mode == "full" and evaluation.on_target
    assert set(evaluation.probes) == {"file", "latency", "memory"}  # the objectives' and the budget's
    # every field of the measurement's settings the job does not offer keeps its default
    offered = {"seq_len", "context", "timeout_s"}
    assert all(getattr(measure, f.name) == f.default for f in fields(measure) if f.name not in offered)


def test_job_json_keeps_its_keys():
    """A run's job.json is SearchJob's settings by name, flat: runs written before still resume (one without
    "costs" resumes measuring: test_a_run_saved_before_costs_were_predicted_resumes_measuring)."""
    assert list(asdict(SearchJob())) == [
        "generations", "population", "seed", "strategy", "seq_len", "context", "threads", "target", "precision",
        "objectives", "constraints", "models_dir", "assets_dir", "runs_dir", "run_dir", "workers", "engine",
        "ray_address", "ray_hardware", "latency_mode", "costs", "timeout_s", "cache", "space"]


def test_auto_takes_the_exact_front_where_no_candidate_costs_a_measurement_of_its_own():
    two = "non_embedding_params,onnx_latency_s"
    assert SearchJob(objectives=two).chosen_strategy()[0] == "exhaustive"  # Archai's 5,880, costs predicted
    assert SearchJob().chosen_strategy() == ("nsga2", "three or more objectives: their exact front holds most of "
                                                      "the space, each member to be measured whole")
    measured = SearchJob(costs="measured").chosen_strategy()  # each candidate's peak measured in its own child
    assert measured == ("nsga2", "onnx_memory_mb measured per candidate")
    tuned = SearchJob(generations=3).chosen_strategy()
    assert tuned == ("nsga2", "NSGA-II's budget was set (generations 3)")
    per_layer = SearchJob(space={"per_layer": True, "n_layer": [2, 4, 8], "n_embd": [128, 256],
                                 "n_inner": [256, 512, 1024], "n_head": [2, 4]}).chosen_strategy()
    assert per_layer[0] == "nsga2" and "more than the 20,000 listed" in per_layer[1]
    assert SearchJob(strategy="nsga2").chosen_strategy() == ("nsga2", "asked for")
    assert SearchJob(objectives=two).search_settings().strategy == "exhaustive"  # what runs: never "auto"


def test_a_run_saved_before_costs_were_predicted_resumes_measuring(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / CHECKPOINT).write_bytes(b"")
    saved = asdict(SearchJob(run_dir=str(run)))
    del saved["costs"]
    (run / JOB_FILE).write_text(json.dumps(saved))
    job, _ = prepare(SearchJob(run_dir=str(run)), resume=True, given={"run_dir"})
    assert job.costs == "measured"
