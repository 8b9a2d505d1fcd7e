"""One module makes every cache key (lts.core.cachekeys): pinned versions, no source hashing, one cache root."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lts.core import cachekeys
from lts.core.cachekeys import VERSIONS, cache_key

REPO = Path(__file__).resolve().parents[2]

BUMP = ("bump deliberately: when what an artifact holds changes, raise its number in lts/core/cachekeys.py "
        "VERSIONS by one (a one-line change), then update this pin")


def test_versions_are_pinned():
    assert VERSIONS == {"graph": 3, "evaluation": 4, "onnx_export": 4, "int8": 3, "token_shards": 1}, (
        f"cache versions changed to {VERSIONS}: {BUMP}")


def test_key_derivation_is_pinned():
    key = cache_key("evaluation", seq_len=1024, target={"threads": 1, "target": "cpu"}, values=[1.5, None, True, "x"])
    assert key == "062834c624ebc28b0292bd650a6226a0b8a925c2", (
        f"the key of a fixed input changed ({key}): a version or the key derivation changed, so every cache in "
        f"use now misses. If that is deliberate, update this pin; to invalidate one kind of artifact, {BUMP}")


def test_keys_are_canonical_and_tell_artifacts_apart():
    a = cache_key("evaluation", x=1, cfg={"b": 2, "a": [1, 2]})
    assert a == cache_key("evaluation", cfg={"a": (1, 2), "b": 2}, x=1)  # order and tuple/list do not matter
    assert len(a) == 40 and set(a) <= set("0123456789abcdef")  # sha1 hex
    assert a != cache_key("evaluation", x=2, cfg={"b": 2, "a": [1, 2]})
    assert a != cache_key("onnx_export", x=1, cfg={"b": 2, "a": [1, 2]})
    assert a != cache_key("evaluation", uses=("int8",), x=1, cfg={"b": 2, "a": [1, 2]})


def test_unknown_artifacts_and_parts_that_are_not_json_data_are_refused():
    with pytest.raises(KeyError, match="unknown cache artifact"):
        cache_key("evaluations", x=1)
    with pytest.raises(KeyError, match="unknown cache artifact"):
        cache_key("evaluation", uses=("int9",), x=1)
    with pytest.raises(TypeError):
        cache_key("evaluation", path=Path("/x"))  # never keyed by str() of an object
    with pytest.raises(ValueError):
        cache_key("evaluation", value=float("nan"))


def test_a_bump_changes_the_keys_of_its_artifact_and_of_those_built_from_it(monkeypatch):
    from lts.cost.evaluator import EvalSettings
    from lts.cost.target import CPUTarget
    from lts.train.shards import shard_key

    def keys() -> dict[str, str]:
        return {"fp32": EvalSettings.create(on_target=False, threads=1).key(),
                "int8": EvalSettings.create(on_target=False, target=CPUTarget(threads=1, precision="int8")).key(),
                "export": cache_key("onnx_export", x=1), "copy": cache_key("int8", x=1),
                "shards": shard_key({"vocab_size": 5}, {"data": ["a.txt"], "name": "a"})}

    before = keys()
    for artifact, changed in [("graph", {"fp32", "int8", "export"}), ("evaluation", {"fp32", "int8"}),
                              ("int8", {"int8", "copy"}), ("onnx_export", {"export"}), ("token_shards", {"shards"})]:
        with monkeypatch.context() as m:
            m.setitem(VERSIONS, artifact, VERSIONS[artifact] + 1)
            after = keys()
        assert {k for k in before if before[k] != after[k]} == changed, artifact
    assert keys() == before


def test_no_key_reads_source_code(monkeypatch):
    """Editing a comment or a docstring must invalidate nothing: no key may depend on source text."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from lts.cost import objectives
    from lts.cost.evaluator import EvalSettings
    from lts.generate.onnx_kv import model_content_hash
    from lts.train.shards import shard_key

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=16, vocab_size=32))
    settings = EvalSettings.create(on_target=False, threads=1)
    before = (settings.key(), settings.measure_key(), objectives.registry_key(), model_content_hash(model),
              shard_key({"vocab_size": 32}, {"data": None}))

    def no_source(*args, **kwargs):
        raise AssertionError("a cache key read source code")

    for name in ("getsource", "getsourcelines", "getsourcefile", "findsource"):
        monkeypatch.setattr(inspect, name, no_source)
    after = (settings.key(), settings.measure_key(), objectives.registry_key(), model_content_hash(model),
             shard_key({"vocab_size": 32}, {"data": None}))
    assert after == before
    for module in ("lts/core/cachekeys.py", "lts/cost/evaluator.py", "lts/cost/objectives.py", "lts/cost/store.py",
                   "lts/cost/quantize.py", "lts/generate/onnx_kv.py", "lts/train/shards.py"):
        assert "getsource" not in (REPO / module).read_text(encoding="utf-8"), module


def _heads(c, m):
    """The number of heads."""
    return float(c.n_head)  # one comment


def _heads_edited(c, m):
    """Heads: a docstring reworded, the comment too; the value is the same."""
    # a comment added
    return float(c.n_head)  # another comment


def test_an_objective_edited_in_comments_only_keeps_its_key_and_a_version_bump_changes_it():
    from lts.cost.evaluator import EvalSettings
    from lts.cost.objectives import Objective, register, unregister

    settings = EvalSettings.create(on_target=False, threads=1)
    obj = register(Objective("heads_test", "heads", +1, "heads", compute=_heads))
    try:
        key = settings.key()
        register(dataclasses.replace(obj, compute=_heads_edited))
        assert settings.key() == key, "an edit of comments and docstrings must not invalidate cached results"
        register(dataclasses.replace(obj, compute=_heads_edited, version=2))
        assert settings.key() != key, "a bumped objective version must invalidate cached results"
    finally:
        unregister("heads_test")
    with pytest.raises(ValueError, match="version"):
        Objective("x", "", +1, "x", compute=_heads, version=0)


def test_keys_are_the_same_in_another_process():
    code = ("import json; from lts.cost.evaluator import EvalSettings; s = EvalSettings.create(on_target=False, "
            "threads=1); print(json.dumps([s.key(), s.measure_key()]))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                           env={**os.environ, "PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    from lts.cost.evaluator import EvalSettings

    here = EvalSettings.create(on_target=False, threads=1)
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout) == [here.key(), here.measure_key()]


def test_one_cache_root_for_everything(monkeypatch, tmp_path):
    from lts.core.fileio import cache_root
    from lts.cost.store import default_cache_path
    from lts.generate.onnx_kv import default_cache_dir

    monkeypatch.setenv("LTS_CACHE_DIR", str(tmp_path / "lts-dir"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "lts-dir"
    monkeypatch.setenv("LTS_CACHE_DIR", "")  # empty: unset
    assert cache_root() == tmp_path / "xdg" / "lts"
    assert default_cache_path() == tmp_path / "xdg" / "lts" / "evaluations.sqlite"
    assert default_cache_dir() == tmp_path / "xdg" / "lts" / "onnx"
    monkeypatch.delenv("LTS_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == tmp_path / "home" / ".cache" / "lts"
    assert default_cache_path().parent == default_cache_dir().parent == cache_root()


def test_the_module_is_what_every_cache_imports():
    """The four caches get their keys from cachekeys (no hand-bumped constants left beside them)."""
    from lts.cost import quantize
    from lts.generate import onnx_kv
    from lts.train import shards

    assert not hasattr(onnx_kv, "FORMAT_VERSION") and not hasattr(quantize, "INT8_FORMAT")
    assert shards.FORMAT == f"lts-token-shards/{VERSIONS['token_shards']}"
    assert onnx_kv.cache_key is shards.cache_key is cachekeys.cache_key


class _Tok:
    """The little of a slow tokenizer that its identity reads."""

    eos_token_id = 0

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab

    def __len__(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return self.vocab


def test_token_shards_are_keyed_by_tokenizer_and_source(tmp_path):
    from lts.core.errors import LTSError
    from lts.train.shards import check_compatible, shard_key, tokenizer_identity

    tok, source = _Tok({"a": 0, "b": 1}), {"data": ["a.txt"], "streaming": False, "name": "local files"}
    meta = {"tokenizer": tokenizer_identity(tok), "source": source, "key": shard_key(tokenizer_identity(tok), source)}
    check_compatible(tmp_path, meta, tok, {**source, "name": "another display name"})
    check_compatible(tmp_path, {k: v for k, v in meta.items() if k != "key"}, tok, source)  # written before keys
    with pytest.raises(LTSError, match="another tokenizer"):
        check_compatible(tmp_path, meta, _Tok({"a": 0, "c": 1}), source)
    with pytest.raises(LTSError, match="another corpus"):
        check_compatible(tmp_path, meta, tok, {**source, "data": ["b.txt"]})
    with pytest.raises(LTSError, match="another key"):
        check_compatible(tmp_path, {**meta, "key": "0" * 40}, tok, source)
