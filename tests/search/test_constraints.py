"""Budgets (--constraint): parsing, pymoo constraint wiring, fronts that never hold an infeasible member."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from searchrun import DETERMINISTIC, rows, search, tiny_space

from lts.core.errors import LTSError
from lts.cost.evaluator import EvalResult
from lts.families.gpt2 import ArchConfig
from lts.families.gpt2.space import SearchSpace
from lts.search.constraints import Constraint, check_possible, parse_constraint, parse_constraints, total_violation
from lts.search.fronts import objective_matrix, pareto_front
from lts.search.job import SearchJob


def test_parse_in_the_unit_or_the_display_unit():
    assert parse_constraint("onnx_generation_memory_mb<=300") == Constraint("onnx_generation_memory_mb", "<=", 300)
    assert parse_constraint(" onnx_decode_latency_s <= 20ms ") == parse_constraint("onnx_decode_latency_s<=0.02")
    assert parse_constraint("non_embedding_params>=5e6") == Constraint("non_embedding_params", ">=", 5e6)
    assert str(parse_constraint("onnx_memory_mb<=250MiB")) == "onnx_memory_mb<=250"


@pytest.mark.parametrize("text, words", [
    ("onnx_speed<=3", "unknown objective"),
    ("onnx_memory_mb<300", "malformed"),
    ("onnx_memory_mb<=", "malformed"),
    ("<=300", "malformed"),
    ("onnx_memory_mb<=0", "must be > 0"),
    ("onnx_memory_mb>=-5", "must be > 0"),
    ("onnx_decode_latency_s<=20GB", "unit"),
])
def test_bad_constraints_are_one_clear_error(text, words):
    with pytest.raises(LTSError, match=words):
        parse_constraint(text)


def test_two_budgets_of_the_same_kind_are_refused():
    with pytest.raises(LTSError, match="two <= budgets"):
        parse_constraints(["onnx_memory_mb<=300", "onnx_memory_mb<=200"])
    assert len(parse_constraints(["onnx_memory_mb<=300", "onnx_memory_mb>=100"])) == 2


def test_violation_is_relative_and_signed():
    c = Constraint("onnx_memory_mb", "<=", 200)
    assert c.violation(100) == -0.5 and c.violation(300) == 0.5 and c.met(200)
    assert Constraint("non_embedding_params", ">=", 10).violation(5) == 0.5
    assert math.isinf(c.violation(math.nan))


def _result(params_config: ArchConfig, memory: float, ok: bool = True) -> EvalResult:
    values = {"non_embedding_params": params_config.non_embedding_params(), "onnx_memory_mb": memory}
    return EvalResult(params_config.archid, params_config, values, status="ok" if ok else "failed: x")


SPACE = SearchSpace(n_layer=(1, 2, 3), n_embd=(32, 64), n_inner=(64, 128), n_head=(2,), vocab_size=64,
                    n_positions=32)


def test_front_holds_only_feasible_members_and_g_has_one_column_per_budget():
    configs = [SPACE.decode(x) for x in np.ndindex(3, 2, 2, 1)]
    results = [_result(c, 10.0 * (i + 1)) for i, c in enumerate(configs)]
    results.append(_result(configs[0], 1.0, ok=False))
    objectives = ("non_embedding_params", "onnx_memory_mb")
    budget = (Constraint("onnx_memory_mb", "<=", 55),)
    front = pareto_front(results, objectives, budget)
    assert front and all(r["onnx_memory_mb"] <= 55 for r in front)
    # Without the budget, the front reaches the large members the budget excludes.
    assert max(r["onnx_memory_mb"] for r in pareto_front(results, objectives)) > 55
    F, G = objective_matrix(results, objectives, budget)
    assert G.shape == (len(results), 2)
    assert all((G[i, 1] <= 0) == (r.ok and r["onnx_memory_mb"] <= 55) for i, r in enumerate(results))
    assert G[-1, 0] > 0 and G[-1, 1] >= 1e6  # a failure is worse than any measured violation
    ranked = sorted(results, key=lambda r: total_violation(r, budget))
    assert ranked[0]["onnx_memory_mb"] <= 55 and math.isinf(total_violation(results[-1], budget))


def test_config_only_budgets_are_proven_possible_or_refused_before_anything_runs():
    check_possible(parse_constraints(["non_embedding_params>=1000"]), SPACE)
    most = max(SPACE.decode(x).non_embedding_params() for x in np.ndindex(3, 2, 2, 1))
    with pytest.raises(LTSError, match="impossible budget.*non_embedding_params spans"):
        check_possible(parse_constraints([f"non_embedding_params>={most + 1}"]), SPACE)
    with pytest.raises(LTSError, match="impossible budget"):  # each alone is possible, not both
        check_possible(parse_constraints([f"non_embedding_params>={most}", "total_params<=10"]), SPACE)
    with pytest.raises(LTSError, match="impossible budget"):
        SearchJob(constraints=["non_embedding_params>=1e12"], objectives="non_embedding_params,onnx_file_mb")


def test_measured_budget_turns_on_the_generation_graph_and_context_is_checked():
    job = SearchJob(objectives="non_embedding_params,onnx_latency_s",
                    constraints=["onnx_generation_memory_mb<=300"])
    assert job.eval_settings().generation and job.eval_settings().measure_settings.context == 512
    assert not SearchJob().eval_settings().generation  # the default search does not pay for it
    decode_only = SearchJob(objectives="non_embedding_params,onnx_decode_latency_s").eval_settings()
    assert decode_only.generation and not decode_only.forward  # nor does a decode search pay for the forward
    with pytest.raises(LTSError, match="context 2048 exceeds"):
        SearchJob(context=2048, objectives="non_embedding_params,onnx_decode_latency_s")
    SearchJob(context=2048)  # not used by the default objectives: nothing to refuse
    with pytest.raises(LTSError, match=r"context \(--context\) must be an integer >= 1"):
        SearchJob(context=0)


@pytest.mark.heavy
def test_cli_budget_front_is_feasible_and_feasible_count_is_reported(tmp_path):
    tiny = tiny_space(tmp_path)
    budget = 0.3  # MiB of ONNX file: about half of the tiny space's architectures fit
    r = search(tmp_path, "--config", tiny, "--objectives", DETERMINISTIC, "--generations", 3, "--population", 8,
               "--constraint", f"onnx_file_mb<={budget}", check=True)
    evals = rows(tmp_path / "run" / "evaluations.csv")
    feasible = [e for e in evals if float(e["onnx_file_mb"]) <= budget]
    assert 0 < len(feasible) < len(evals)
    assert f"{len(feasible)} of {len(evals)} evaluated candidates meet them" in r.stdout
    front = rows(tmp_path / "run" / "pareto.csv")
    assert front and all(float(e["onnx_file_mb"]) <= budget for e in front)
    assert {e["archid"] for e in front} <= {e["archid"] for e in feasible}
    job = json.loads((tmp_path / "run" / "job.json").read_text())
    assert job["constraints"] == [f"onnx_file_mb<={budget}"]


@pytest.mark.heavy
def test_cli_budget_nobody_meets_exits_1_lists_the_closest_and_leaves_models(tmp_path):
    tiny = tiny_space(tmp_path)
    search(tmp_path, "--config", tiny, "--objectives", DETERMINISTIC, "--generations", 1, "--population", 4,
           name="first", check=True)
    before = {p: p.read_bytes() for p in (tmp_path / "models").rglob("*") if p.is_file()}
    r = search(tmp_path, "--config", tiny, "--objectives", DETERMINISTIC, "--generations", 2, "--population", 4,
               "--constraint", "onnx_file_mb<=0.001")
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "no evaluated candidate meets onnx_file_mb<=0.001" in line and "closest: gpt2_" in line
    closest = rows(tmp_path / "run" / "closest.csv")
    assert len(closest) == len(rows(tmp_path / "run" / "evaluations.csv"))
    violations = [float(c["total_violation"]) for c in closest]
    assert violations == sorted(violations) and violations[0] > 0
    assert {p: p.read_bytes() for p in (tmp_path / "models").rglob("*") if p.is_file()} == before
