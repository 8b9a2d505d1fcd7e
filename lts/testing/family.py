"""The :class:`~lts.families.Family` / :class:`~lts.families.Arch` contract as tests: subclass
:class:`FamilyContract`, provide ``family`` and ``space`` (a small space of it: every architecture is checked).

What the rest of LTS relies on, each one test: an architecture is frozen, hashable and reads back from its
record and from the config.json it saves with the same archid; its columns are text; its parameter count is
exactly the built model's; every graph part it names is a valid ONNX graph (weights filled in) with the inputs
its kind promises, and "full" holds the weights of "base" plus its blocks; the generation graph runs on a cache
shaped by ``kv_layout``; its space lists, samples, decodes and encodes consistently.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pytest

from lts.core.onnxgraph import build_model
from lts.families import Arch, Family, arch_from_dict, archid_of, load_arch, to_record


class FamilyContract:
    """Provide fixtures ``family`` (the Family) and ``space`` (a small space of it, a few dozen architectures, where
    every gene combination is an architecture of its own: none repaired into another, so its size is exact)."""

    @pytest.fixture
    def archs(self, space: Any) -> list[Arch]:
        return list({a.archid: a for a in space.configs()}.values())

    def test_the_family_and_its_architectures_keep_the_protocols(self, family: Family, archs: list[Arch]) -> None:
        assert isinstance(family, Family) and family.name and family.title
        for arch in archs:
            assert isinstance(arch, Arch) and arch.family is family

    def test_an_architecture_reads_back_from_its_record_with_its_id(self, archs: list[Arch]) -> None:
        for arch in archs:
            back = arch_from_dict(json.loads(json.dumps(to_record(arch))))
            assert back == arch and hash(back) == hash(arch) and back.archid == arch.archid == archid_of(arch)
            assert arch.archid.startswith(arch.family.name + "_")

    def test_the_config_it_saves_reads_back_with_its_id(self, archs: list[Arch], tmp_path: Any) -> None:
        for arch in archs[:6]:
            folder = tmp_path / arch.archid
            arch.to_hf_config().save_pretrained(folder)
            assert load_arch(folder).archid == arch.archid

    def test_columns_are_text(self, archs: list[Arch]) -> None:
        for arch in archs:
            columns = arch.columns()
            assert columns and all(isinstance(k, str) and isinstance(v, str) and v for k, v in columns.items())

    def test_the_parameter_count_is_the_built_models(self, archs: list[Arch]) -> None:
        import torch

        for arch in archs[:: max(1, len(archs) // 6)]:
            with torch.device("meta"):
                model = arch.to_model()
            assert sum(p.numel() for p in model.parameters()) == arch.total_params(), arch
            assert 0 < arch.non_embedding_params() < arch.total_params()

    def test_every_part_is_a_graph_of_its_kind(self, archs: list[Arch]) -> None:
        for arch in archs[:: max(1, len(archs) // 6)]:
            full, base = arch.graph_spec("full"), arch.graph_spec("base")
            for spec in (full, base):
                onnx.checker.check_model(build_model(spec))
                assert [i.name for i in spec.model.graph.input] == ["input_ids"]
            block_weights = 0
            for part, (_, count) in arch.block_parts().items():
                spec = arch.graph_spec(part)
                onnx.checker.check_model(build_model(spec))
                assert [i.name for i in spec.model.graph.input] == ["hidden", "mask"]
                assert isinstance(arch.part_key(part), tuple)
                block_weights += count * sum(int(np.prod(s)) for _, s in spec.weights)
            weights = {name: int(np.prod(s)) for name, s in full.weights}
            assert sum(weights.values()) == sum(int(np.prod(s)) for _, s in base.weights) + block_weights
            assert isinstance(arch.part_key("base"), tuple)

    def test_the_generation_graph_runs_with_the_cache_of_kv_layout(self, archs: list[Arch]) -> None:
        """A prefill of 3 tokens on an empty cache shaped by ``kv_layout``: logits (1, V), presents of 3 positions."""
        import onnxruntime as ort

        for arch in archs[:: max(1, len(archs) // 6)]:
            spec = arch.graph_spec("kv")
            model = build_model(spec)
            onnx.checker.check_model(model)
            layout = arch.kv_layout()
            names = [i.name for i in model.graph.input]
            assert names[:2] == ["input_ids", "attention_mask"] and len(names) == 2 + 2 * len(layout)
            feeds: dict[str, Any] = {"input_ids": np.array([[1, 2, 3]], np.int64),
                                     "attention_mask": np.ones((1, 3), np.int64)}
            for name, (heads, head_dim) in zip(names[2:], (pair for pair in layout for _ in range(2))):
                feeds[name] = np.zeros((1, heads, 0, head_dim), np.float32)
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            logits, *presents = sess.run(None, feeds)
            assert logits.shape == (1, arch.vocab_size) and np.isfinite(logits).all()
            assert [p.shape for p in presents] == [(1, h, 3, d) for h, d in layout for _ in range(2)]

    def test_the_space_lists_samples_decodes_and_encodes_alike(self, space: Any, archs: list[Arch]) -> None:
        # size is an upper bound where genes are repaired into another architecture; the contract's space has
        # no such genes, so it must be exact
        assert space.family.name == archs[0].family.name
        assert len(archs) == space.size, f"{len(archs)} distinct architectures listed, size says {space.size}"
        variables = space.variables()
        assert list(variables) == list(space.genes)
        rng = np.random.default_rng(0)
        ids = {a.archid for a in archs}
        for _ in range(20):
            arch = space.sample(rng)
            assert arch.archid in ids
            assert space.decode(space.encode(arch)) == arch
