"""Costs predicted from fitted models (lts.cost.predict, lts.cost.features) and how the Evaluator uses them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lts.cost.evaluator import EvalSettings, Evaluator
from lts.cost.features import arch_features, graph_features, part_features
from lts.cost.predict import LATENCY_COLUMNS, MEMORY_COLUMNS, Samples, design, fit, needed, sample_value, samples_of
from lts.cost.probes import Timing
from lts.cost.store import SQLiteStore
from lts.families.gpt2 import ArchConfig

S = 64


def test_features_count_a_block_s_matrix_products_exactly():
    c = ArchConfig(2, 64, 96, 4, vocab_size=512, n_positions=128)
    f = part_features(c, "block", S)
    E, inner = 64, 96
    assert f["weight_flops"] == 2 * S * (E * 3 * E + E * E + 2 * E * inner)  # qkv, proj, fc, fc_proj
    assert f["act_flops"] == 2 * 2 * S * S * E  # scores and mixing, over all heads
    assert f["quad_elems"] > 0 and f["largest_quad_bytes"] == 4 * 4 * S * S  # 4 heads of S x S scores
    assert f["weight_bytes"] == 4 * (E * 3 * E + 3 * E + E * E + E + 2 * E + E * inner + inner + inner * E + E + 2 * E)


def test_a_whole_architecture_s_features_are_its_parts_added_up():
    c = ArchConfig(3, 64, 96, 4, vocab_size=512, n_positions=128)
    whole = graph_features(c.graph_spec("full"), S)
    composed = arch_features(c, S)
    for name in ("weight_flops", "act_flops", "weight_bytes"):
        assert composed[name] == whole[name], name
    assert composed["largest_quad_bytes"] == whole["largest_quad_bytes"]


def _linear(features, coef):
    return coef[0] + sum(c * features[name] for c, name in zip(coef[1:], LATENCY_COLUMNS))


def _blocks(n, seed=0):
    rng = np.random.default_rng(seed)
    return [ArchConfig(1, int(e), int(i), int(h), vocab_size=512, n_positions=128)
            for e, i, h in zip(rng.choice([32, 64, 96, 128], n), rng.choice([64, 128, 192, 256], n),
                               rng.choice([2, 4], n))]


def test_a_fit_recovers_a_linear_law_and_is_sure_inside_unsure_outside():
    configs = list({c.archid: c for c in _blocks(40)}.values())
    feats = [part_features(c, "block", S) for c in configs]
    coef = [1e-3, 2e-9, 1e-9, 0, 3e-8, 0, 1e-5]
    values = [_linear(f, coef) for f in feats]
    model = fit(feats, values, LATENCY_COLUMNS)
    assert model is not None and model.sigma < 1e-6
    inside = part_features(configs[0], "block", S)
    value, sigma = model.predict(inside)
    assert value == pytest.approx(_linear(inside, coef), rel=1e-6)
    # far outside what was fitted: the leverage widens the uncertainty
    far = part_features(ArchConfig(1, 1024, 4096, 8, vocab_size=512, n_positions=128), "block", S)
    noisy = fit(feats, [v * (1 + 0.02 * math.sin(i)) for i, v in enumerate(values)], LATENCY_COLUMNS)
    assert noisy.predict(far)[1] > 2 * noisy.predict(inside)[1] > 0


def test_a_fit_needs_more_samples_than_directions():
    feats = [part_features(c, "block", S) for c in _blocks(3)]
    assert fit(feats, [1.0, 2.0, 3.0], LATENCY_COLUMNS) is None
    X = np.array([[1.0, *(f[c] for c in LATENCY_COLUMNS)] for f in feats])
    assert needed(X) > len(feats)


def test_design_takes_the_extremes_first_then_spreads():
    configs = [ArchConfig(1, e, 2 * e, 2, vocab_size=512, n_positions=128) for e in (32, 64, 96, 128, 160)]
    feats = [part_features(c, "block", S) for c in configs]
    first = design(feats, [], LATENCY_COLUMNS, 2)
    assert sorted(first) == [0, 4]
    third = design(feats, [feats[0], feats[4]], LATENCY_COLUMNS, 1)
    assert third == [1]  # on a log scale, 64 is the farthest from both 32 and 160
    assert design(feats, feats, LATENCY_COLUMNS, 3) == []  # all measured: nothing new to spread over


def test_samples_are_read_by_kind_and_only_with_today_s_features(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite")
    f = {name: 1.0 for name in MEMORY_COLUMNS}
    store.put("timings", ("memory.1:whole:gpt2_x:mk:hw",), sample_value(f, bytes=100))
    store.put("timings", ("latency.1:block:(1, 2, 3):mk:hw",),
              sample_value(f, median_s=0.2, cv=0.0, repeats=5, reference_s=0.1, drift=0.0))
    store.put("timings", ("latency.1:llama:block:(1, 2, 3):mk:hw",),
              sample_value(f, median_s=0.3, cv=0.0, repeats=5, reference_s=0.1, drift=0.0))
    store.put("timings", ("latency.1:base:(1, 2):mk:hw",), json.dumps({"median_s": 1.0, "reference_s": 1.0}))
    store.put("timings", ("latency.1:block:(1, 2, 3):other:hw",),
              sample_value(f, median_s=0.2, cv=0.0, repeats=5, reference_s=0.1, drift=0.0))
    samples = Samples(store, ":mk:hw")
    assert samples.rows("memory") == [(f, 100.0)]
    assert [v for _, v in samples.rows("latency:block")] == [pytest.approx(2.0)]
    assert [v for _, v in samples.rows("latency:llama:block")] == [pytest.approx(3.0)]
    assert samples.rows("latency:base") == []  # stored without features: served as a timing, not fitted on
    assert samples_of("latency.1:base:(1, 2):mk:hw", json.dumps({"median_s": 1.0})) == []


def test_a_predicting_evaluator_measures_nothing_once_its_models_are_fitted(tmp_path):
    """Latency parts and peak memory come from the fits on the stored samples (no child process: none can start
    here, the calibration is given), the result says it was predicted, and it is not stored."""
    store = SQLiteStore(tmp_path / "s.sqlite")
    settings = EvalSettings.create(costs="predicted", seq_len=S, threads=1)
    evaluator = Evaluator(settings, store=store, calibration_s=0.01)
    suffix = f":{settings.measure_key()}:{evaluator.hardware['id']}"
    train = [ArchConfig(n, e, i, 2, vocab_size=512, n_positions=128)
             for n, e, i in [(1, 32, 64), (2, 40, 128), (3, 48, 192), (2, 56, 256), (1, 64, 64), (3, 72, 256),
                             (2, 88, 64), (1, 96, 128), (3, 104, 192), (2, 112, 128), (1, 120, 256), (3, 128, 64)]]
    for c in train:
        f = arch_features(c, S)
        load, run = 1e6 + 2 * f["weight_bytes"], 2e6 + f["weight_bytes"]  # the larger sets the peak
        peak = sample_value(f, bytes=max(load, run), load_bytes=load, run_bytes=run)
        store.put("timings", (f"memory.1:whole:{c.archid}{suffix}",), peak)
        for part in ("base", "block"):
            pf = part_features(c, part, S)
            units = 1.0 + pf["weight_flops"] * 1e-7
            store.put("timings", (f"latency.1:{part}:{c.part_key(part)}{suffix}",),
                      sample_value(pf, median_s=units * 0.01, cv=0.01, repeats=5, reference_s=0.01, drift=0.0))
    new = ArchConfig(4, 80, 160, 2, vocab_size=512, n_positions=128)
    assert evaluator.to_measure([new]) == ([], [])  # inside what was measured: nothing asked for
    result = evaluator.evaluate(new)
    assert result.ok and result.predicted, result.status
    expected_ms = (1 + part_features(new, "base", S)["weight_flops"] * 1e-7
                   + 4 * (1 + part_features(new, "block", S)["weight_flops"] * 1e-7)) * 10
    assert result.onnx_latency_s * 1e3 == pytest.approx(expected_ms, rel=1e-3)
    weights = arch_features(new, S)["weight_bytes"]
    assert result.onnx_memory_mb * 2**20 == pytest.approx(max(1e6 + 2 * weights, 2e6 + weights), rel=1e-3)
    assert evaluator.cached(new) is None  # a prediction is never served from the store as a result


def test_whole_timings_fit_the_whole_graph_s_model_which_then_predicts_without_the_composition_s_bias(tmp_path):
    """Part timings whose sum misses a fixed 10 % of what the whole graphs take (the composition's bias), and whole
    timings of some architectures (a front measured whole, lts evaluate): a new architecture inside them is predicted
    by the whole graph's model, bias included; one far outside them (an extrapolation) is composed from its parts."""
    store = SQLiteStore(tmp_path / "s.sqlite")
    settings = EvalSettings.create(costs="predicted", seq_len=S, threads=1)
    evaluator = Evaluator(settings, store=store, calibration_s=0.01)
    suffix = f":{settings.measure_key()}:{evaluator.hardware['id']}"

    def units(config):  # what the parts add up to
        return (1 + part_features(config, "base", S)["weight_flops"] * 1e-7
                + config.n_layer * (1 + part_features(config, "block", S)["weight_flops"] * 1e-7))

    train = [ArchConfig(n, e, i, 2, vocab_size=512, n_positions=128)
             for n, e, i in [(1, 32, 64), (2, 40, 128), (3, 48, 192), (2, 56, 256), (1, 64, 64), (3, 72, 256),
                             (2, 88, 64), (1, 96, 128), (3, 104, 192), (2, 112, 128), (1, 120, 256), (3, 128, 64)]]
    for c in train:
        for part in ("base", "block"):
            pf = part_features(c, part, S)
            store.put("timings", (f"latency.1:{part}:{c.part_key(part)}{suffix}",),
                      sample_value(pf, median_s=(1.0 + pf["weight_flops"] * 1e-7) * 0.01, cv=0.01, repeats=5,
                                   reference_s=0.01, drift=0.0))
        store.put("timings", (f"latency.1:whole:{c.archid}{suffix}",),
                  sample_value(arch_features(c, S), median_s=1.1 * units(c) * 0.01, cv=0.01, repeats=5,
                               reference_s=0.01, drift=0.0))
    inside = ArchConfig(2, 80, 160, 2, vocab_size=512, n_positions=128)
    result = evaluator.evaluate(inside)
    assert set(result.measurement.get("latency")) == {"full"} and result.predicted
    assert result.onnx_latency_s * 1e3 == pytest.approx(1.1 * units(inside) * 10, rel=0.02)
    outside = ArchConfig(12, 512, 2048, 8, vocab_size=512, n_positions=128)  # far beyond every whole timing
    composed = evaluator.evaluate(outside)
    assert set(composed.measurement.get("latency")) == {"base", "block"}

    # a whole timing measured is stored as such a sample, under its archid (what the next search fits on)
    whole = evaluator.whole_graph_evaluator()
    timing = Timing(median_s=0.05, cv=0.01, repeats=5, reference_s=0.01)
    whole._put_timing(inside, "full", timing)
    assert [v for f, v in evaluator.samples.rows("latency:whole") if f == arch_features(inside, S)] == [5.0]
