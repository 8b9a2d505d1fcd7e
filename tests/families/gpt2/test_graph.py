import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from transformers import GPT2LMHeadModel

from lts.core.onnxgraph import build_model, kv_names, state_dict_weights, tiled_weights, write_onnx
from lts.families.gpt2 import ArchConfig
from lts.families.gpt2.graph import forward_graph_spec, kv_graph_spec, weight_shapes

PER_LAYER = ArchConfig(3, 64, (96, 160, 64), (4, 2, 8), vocab_size=300, n_positions=48)  # the LTS paper's kind


def _torch_model(cfg: ArchConfig, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    model = cfg.to_model().eval()
    with torch.no_grad():
        for p in model.parameters():  # non-trivial LayerNorm/bias values too
            p.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("cfg", [ArchConfig(2, 64, 96, 4, vocab_size=300, n_positions=48),
                                 ArchConfig(3, 48, 160, 2, vocab_size=257, n_positions=40), PER_LAYER])
def test_written_graph_matches_transformers_logits(tmp_path, cfg):
    model = _torch_model(cfg)
    path = tmp_path / "m.onnx"
    n_bytes = write_onnx(forward_graph_spec(cfg), path, state_dict_weights(model.state_dict()))
    assert n_bytes == path.stat().st_size == write_onnx(forward_graph_spec(cfg), None)
    onnx.checker.check_model(onnx.load(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seq in (1, 17, cfg.n_positions):
        ids = np.random.default_rng(seq).integers(0, cfg.vocab_size, size=(1, seq))
        got = sess.run(None, {"input_ids": ids})[0]
        with torch.no_grad():
            want = model(torch.tensor(ids), logits_to_keep=1).logits.numpy()
        assert got.shape == (1, 1, cfg.vocab_size)
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_streamed_file_equals_protobuf_serialisation(tmp_path):
    cfg = ArchConfig(1, 32, 64, 2, vocab_size=100, n_positions=16)
    weights = tiled_weights(period=1000)
    path = tmp_path / "m.onnx"
    write_onnx(forward_graph_spec(cfg), path, weights)
    assert onnx.load(path) == build_model(forward_graph_spec(cfg), weights)


@pytest.mark.parametrize("cfg", [ArchConfig(2, 64, 128, 2, vocab_size=500, n_positions=32), PER_LAYER])
def test_graph_holds_exactly_the_models_weights(cfg):
    names = dict(forward_graph_spec(cfg).weights)
    with torch.device("meta"):
        model = cfg.to_model()
    state = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to wte
    assert names == state == weight_shapes(cfg)


def test_parts_have_the_right_interfaces(tmp_path):
    cfg = ArchConfig(3, 64, 96, 4, vocab_size=200, n_positions=32)
    for part, n_weights in (("base", 4), ("block", 12)):  # base: wte, wpe, ln_f
        spec = forward_graph_spec(cfg, part)
        assert len(spec.weights) == n_weights
        path = tmp_path / f"{part}.onnx"
        write_onnx(spec, path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        if part == "block":
            mask = np.zeros((1, 1, 9, 9), np.float32)
            out = sess.run(None, {"hidden": np.ones((1, 9, 64), np.float32), "mask": mask})[0]
            assert out.shape == (1, 1, 64)
        else:
            out = sess.run(None, {"input_ids": np.zeros((1, 9), np.int64)})[0]
            assert out.shape == (1, 1, 200)
    with pytest.raises(ValueError):
        forward_graph_spec(cfg, "nope")


@pytest.mark.parametrize("cfg", [ArchConfig(2, 64, 96, 4, vocab_size=300, n_positions=48),
                                 ArchConfig(3, 48, 160, 2, vocab_size=257, n_positions=40), PER_LAYER])
def test_kv_graph_matches_transformers_with_a_cache(tmp_path, cfg):
    """Prefill, then decode steps feeding back the presents: logits and cache as transformers' own."""
    model = _torch_model(cfg)
    path = tmp_path / "kv.onnx"
    spec = kv_graph_spec(cfg)
    assert write_onnx(spec, path, state_dict_weights(model.state_dict())) == path.stat().st_size
    onnx.checker.check_model(onnx.load(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    past_names, present_names = kv_names(cfg.n_layer)
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", *past_names]
    assert [o.name for o in sess.get_outputs()] == ["logits", *present_names]
    batch, prompt = 2, 7
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(batch, prompt))
    heads = [h for h in cfg.layer_values("n_head") for _ in ("key", "value")]
    past = [np.zeros((batch, h, 0, cfg.n_embd // h), np.float32) for h in heads]
    feed_ids, seen = ids, ids
    for _ in range(5):
        mask = np.ones((batch, past[0].shape[2] + feed_ids.shape[1]), np.int64)
        logits, *past = sess.run(None, {"input_ids": feed_ids, "attention_mask": mask, **dict(zip(past_names, past))})
        with torch.no_grad():
            out = model(torch.tensor(seen), use_cache=True)
        np.testing.assert_allclose(logits, out.logits[:, -1].numpy(), atol=2e-4, rtol=1e-4)
        for layer, (k, v) in enumerate(zip(past[::2], past[1::2])):
            np.testing.assert_allclose(k, out.past_key_values.layers[layer].keys.numpy(), atol=2e-4, rtol=1e-4)
            np.testing.assert_allclose(v, out.past_key_values.layers[layer].values.numpy(), atol=2e-4, rtol=1e-4)
        feed_ids = logits.argmax(-1)[:, None].astype(np.int64)
        seen = np.concatenate([seen, feed_ids], axis=1)
    assert [p.shape for p in past] == [(batch, h, prompt + 4, cfg.n_embd // h) for h in heads]


@pytest.mark.parametrize("cfg", [ArchConfig(2, 64, 128, 2, vocab_size=500, n_positions=32), PER_LAYER])
def test_kv_graph_holds_exactly_the_models_weights(cfg):
    assert dict(kv_graph_spec(cfg).weights) == weight_shapes(cfg)


def test_stand_in_weights_are_never_alike():
    """ONNX Runtime stores identical initializers once: stand-ins tiled alike made the blocks of a deep
    model share weights (8x896/128: generation memory 138 MiB instead of 193), unlike any trained model."""
    cfg = ArchConfig(4, 64, 128, 2, vocab_size=100, n_positions=16)
    weights = tiled_weights(period=1000)
    spec = kv_graph_spec(cfg)
    tensors = [weights(n, s) for n, s in spec.weights if not n.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))]
    assert len({t.tobytes() for t in tensors}) == len(tensors)
