"""The Llama family: its fields and checks, its exact parameter count, stock configs, and graphs that compute what
transformers' LlamaForCausalLM computes (forward, KV cache with left padding, tied and untied)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lts.core.errors import LTSError
from lts.core.onnxgraph import state_dict_weights, write_onnx
from lts.families import arch_from_dict, load_arch
from lts.families.llama import LlamaArch
from lts.families.llama.space import LlamaSpace

SMOLLM2_135M = dict(hidden_size=576, num_hidden_layers=30, intermediate_size=1536, num_attention_heads=9,
                    num_key_value_heads=3, head_dim=64, tie_word_embeddings=True, vocab_size=49152,
                    rope_theta=100000.0, max_position_embeddings=8192)


def small(**kw):
    fields = dict(hidden_size=64, num_hidden_layers=3, intermediate_size=160, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, vocab_size=211, max_position_embeddings=64)
    return LlamaArch(**{**fields, **kw})


def test_smollm2_135m_has_its_published_parameter_count_exactly():
    import torch
    from transformers import LlamaForCausalLM

    arch = LlamaArch(**SMOLLM2_135M)
    with torch.device("meta"):
        model = LlamaForCausalLM(arch.to_hf_config())
    assert arch.total_params() == sum(p.numel() for p in model.parameters()) == 134_515_008
    embed = model.model.embed_tokens.weight.numel()
    assert arch.non_embedding_params() == arch.total_params() - embed
    untied = LlamaArch(**{**SMOLLM2_135M, "tie_word_embeddings": False})
    assert untied.non_embedding_params() == arch.non_embedding_params()  # lm_head is an embedding, tied or not
    assert untied.total_params() == arch.total_params() + embed


def test_a_saved_config_is_a_stock_llama_config_that_reads_back(tmp_path):
    from transformers import AutoConfig

    arch = LlamaArch(**SMOLLM2_135M)
    arch.to_hf_config().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "llama" and data["num_key_value_heads"] == 3
    config = AutoConfig.from_pretrained(tmp_path)  # plain transformers: no LTS type involved
    assert type(config).__name__ == "LlamaConfig"
    assert load_arch(tmp_path) == arch and load_arch(tmp_path).archid == arch.archid


def test_bad_fields_are_one_line():
    with pytest.raises(LTSError, match="num_attention_heads=9 is not divisible by num_key_value_heads=2"):
        LlamaArch(576, 4, 1536, 9, 2)
    with pytest.raises(LTSError, match="hidden_size must be an integer"):
        LlamaArch(576.0, 4, 1536, 9)
    with pytest.raises(LTSError, match="cfg: missing field 'intermediate_size'"):
        arch_from_dict({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
                       source="cfg")
    with pytest.raises(LTSError, match="computes the standard layer only; this config sets hidden_act='gelu'"):
        arch_from_dict({"model_type": "llama", **small().to_dict(), "hidden_act": "gelu"}, source="cfg")
    assert LlamaArch(512, 2, 1024, 8).head_dim == 64 and LlamaArch(512, 2, 1024, 8).num_key_value_heads == 8


@pytest.mark.parametrize("tied", [True, False])
def test_the_forward_graph_gives_transformers_logits(tied, tmp_path):
    import onnxruntime as ort
    import torch

    arch = small(tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = arch.to_model().eval()
    path = tmp_path / "full.onnx"
    write_onnx(arch.graph_spec("full"), path, state_dict_weights(model.state_dict()))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seq in (1, 9):
        ids = np.random.default_rng(seq).integers(0, arch.vocab_size, (1, seq))
        got = sess.run(None, {"input_ids": ids})[0]
        with torch.no_grad():
            want = model(torch.tensor(ids)).logits[:, -1:, :].numpy()
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("tied, layer", [(True, "fused"), (False, "fused"), (True, "exported")])
def test_the_kv_graph_decodes_what_generate_does_with_left_padding(tied, layer, tmp_path):
    import onnxruntime as ort
    import torch

    from lts.families.llama.graph import kv_graph_spec

    arch = small(tie_word_embeddings=tied, num_key_value_heads=1)
    torch.manual_seed(1)
    model = arch.to_model().eval()
    path = tmp_path / "kv.onnx"
    write_onnx(kv_graph_spec(arch, layer), path, state_dict_weights(model.state_dict()))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = np.array([[0, 0, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6]])
    mask = np.array([[0, 0, 1, 1, 1, 1], [1] * 6])
    with torch.no_grad():
        want = model.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=5,
                              do_sample=False, pad_token_id=0)[:, ids.shape[1]:].numpy()
        positions = torch.tensor(mask).cumsum(-1).sub(1).clamp(min=0)  # as generate derives them
        want_logits = model(torch.tensor(ids), attention_mask=torch.tensor(mask),
                            position_ids=positions).logits[:, -1].numpy()
    layout = arch.kv_layout()
    assert layout == [(1, 16)] * 3  # the cache holds the KV heads only
    feeds = {"input_ids": ids, "attention_mask": mask}
    for i, (h, d) in enumerate(layout):
        feeds[f"past_key_{i}"] = feeds[f"past_value_{i}"] = np.zeros((2, h, 0, d), np.float32)
    got = []
    for step in range(5):
        logits, *presents = sess.run(None, feeds)
        if step == 0:  # the prefill's logits of the last position, padded row included
            np.testing.assert_allclose(logits, want_logits, atol=2e-5, rtol=1e-4)
        token = logits.argmax(-1)[:, None]
        got.append(token)
        mask = np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1)
        feeds = {"input_ids": token, "attention_mask": mask}
        for i in range(len(layout)):
            feeds[f"past_key_{i}"], feeds[f"past_value_{i}"] = presents[2 * i], presents[2 * i + 1]
    np.testing.assert_array_equal(np.concatenate(got, axis=1), want)


def test_a_tied_graph_holds_the_embedding_once():
    tied, untied = small(), small(tie_word_embeddings=False)
    for part in ("full", "kv"):
        names = [name for name, _ in tied.graph_spec(part).weights]
        assert not [n for n in names if n.startswith("lm_head")] and names.count("model.embed_tokens.weight") == 1
        # an untied head, like every projection, is stored transposed: read as it is, never copied at load
        untied_names = [name for name, _ in untied.graph_spec(part).weights]
        assert "lm_head.weight.T" in untied_names and "model.layers.0.mlp.up_proj.weight.T" in untied_names
        for arch in (tied, untied):
            n = sum(int(np.prod(s)) for _, s in arch.graph_spec(part).weights)
            assert n == arch.total_params()


def test_the_space_decodes_kv_heads_to_divisors_and_ffn_to_multiples_of_64():
    space = LlamaSpace()
    assert space.size == 15 * 13 * 5 * 5 * 2
    arch = space.decode({"num_hidden_layers": 0, "hidden_size": space.hidden_size.index(576), "ffn_ratio": 1,
                         "num_key_value_heads": space.num_key_value_heads.index(8), "tie_word_embeddings": 0})
    assert (arch.num_attention_heads, arch.num_key_value_heads, arch.intermediate_size) == (9, 3, 1472)
    rng = np.random.default_rng(0)
    for _ in range(50):
        arch = space.sample(rng)
        assert arch.num_attention_heads % arch.num_key_value_heads == 0 and arch.intermediate_size % 64 == 0
        assert space.decode(space.encode(arch)) == arch
    with pytest.raises(LTSError, match="not a multiple of head_dim 64"):
        LlamaSpace(hidden_size=(256, 300))
    with pytest.raises(LTSError, match="unknown space field"):
        LlamaSpace.from_dict({"n_layer": [2]})


def test_exported_pieces_are_cached_with_the_versions_their_key_was_made_with():
    from lts.core.cachekeys import versions
    from lts.families import exported

    arch = small(hidden_size=48, num_attention_heads=3, num_key_value_heads=3, intermediate_size=96)  # its own shape
    spec = arch.graph_spec("block")
    files = sorted(exported.cache_folder().glob("*.onnx"))
    assert files and all(exported.recorded_versions(f) == versions("graph") for f in files)
    exported._MEMORY.clear()  # noqa: SLF001 - as a fresh process (a measuring child) finds it: read from the cache
    again = arch.graph_spec("block")
    assert again.weights == spec.weights and again.model.SerializeToString() == spec.model.SerializeToString()
