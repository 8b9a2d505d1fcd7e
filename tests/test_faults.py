"""The fault and bad-input suite: the five real CLIs, run as subprocesses, fed bad input.

    python -m pytest tests/test_faults.py -q          # every case; a table of what held is printed at the end
    python -m pytest tests/test_faults.py -q -k train # one CLI's cases (ids start with the CLI's name)

Every case gives ``search.py``, ``train.py``, ``generate_text.py``, ``benchmark.py`` or
``python -m lts evaluate`` one bad input (a missing, corrupt or empty file, malformed YAML or
JSON, a wrong type, an out-of-range number, an unknown name, an unwritable folder, a truncated
SQLite cache, an incompatible checkpoint, a model folder with corrupt safetensors) and checks
that it *held*: exit status 2, exactly one line on stderr that names the problem, no traceback,
and nothing created, modified or deleted in the case's folder (the command's working folder,
where every input and every output location of the case lies; ``$LTS_CACHE_DIR`` points inside
it too). The hub is offline (``HF_HUB_OFFLINE=1``; ``HF_HOME`` is the test session's, which holds no model).

The cases run concurrently (one process each, forked from a server that has the libraries imported:
``tests/clirun.py``) the first time a case is asked for; each case is still its own test with its own verdict.
The counts are printed by ``pytest_terminal_summary`` in ``tests/conftest.py``, from the ``fault_case``
property each test records.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest
from clirun import run_cli

pytestmark = pytest.mark.heavy  # whole searches, clusters or process groups: seconds each

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600  # per subprocess; generous (cases run side by side), never a measurement

CLIS: dict[str, list[str]] = {
    "search.py": [str(REPO / "search.py")],
    "train.py": [str(REPO / "train.py")],
    "generate_text.py": [str(REPO / "generate_text.py")],
    "benchmark.py": [str(REPO / "benchmark.py")],
    "lts evaluate": ["-m", "lts", "evaluate"],
    "lts report": ["-m", "lts", "report"],
}

# Deterministic junk: no sqlite, pickle, torch, safetensors or JSON reader accepts it.
GARBAGE = bytes((i * 97 + 13) % 256 for i in range(512))
TINY_CONFIG = '{"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_inner": 128, "n_head": 2, "n_positions": 128}'


@dataclass(frozen=True)
class Case:
    """One bad input: which CLI, what is bad, its arguments, the files it needs, and what the error line names."""

    id: str
    cli: str
    kind: str                          # the category of fault (see KINDS)
    bad: str                           # what is wrong, in words
    args: tuple[str, ...]
    expect: str                        # the one error line must contain this
    files: Mapping[str, str | bytes] = field(default_factory=dict)  # written after `uses` is set up
    uses: tuple[str, ...] = ()         # "model", "tokenizer", "run", "train_ckpt": see _prepare
    prepare: Callable[[Path], None] | None = None  # anything files cannot say
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment (paths relative to the case folder)
    xfail: str | None = None           # the product's bug, while it is not fixed


KINDS = ("missing file", "corrupt file", "empty file", "malformed YAML", "malformed JSON", "wrong type",
         "out-of-range number", "unknown name", "unwritable folder", "truncated SQLite cache",
         "incompatible checkpoint", "corrupt safetensors", "unavailable device", "incompatible data",
         "missing package", "unreachable cluster")

SEARCH = ("--objectives", "non_embedding_params,onnx_file_mb", "--generations", "1", "--population", "2",
          "--run-dir", "run", "--cache", "c.sqlite", "--out", "models", "--assets-dir", "assets", "--no-progress")
SEARCH_RESUME = ("--resume", "--run-dir", "R", "--no-progress")
TRAIN = ("model", "--out", "trained", "--corpus", "pydoc", "--max-steps", "2", "--batch-size", "2",
         "--seq-len", "32", "--eval-every", "1", "--eval-windows", "2", "--threads", "1", "--no-progress")
GENERATE = ("model", "model", "Once upon a time", "--max-new-tokens", "3", "--greedy")
BENCH = ("model", "--out", "bench", "--max-new-tokens", "2", "--prompt", "Hello", "--no-charts", "--no-progress")
EVAL = ("arch", "--seq-len", "32", "--threads", "1", "--cache", "c.sqlite")

def _truncate(rel: str, size: int) -> Callable[[Path], None]:
    def cut(case_dir: Path) -> None:
        data = (case_dir / rel).read_bytes()
        assert len(data) > size, (rel, len(data))
        (case_dir / rel).write_bytes(data[:size])
    return cut


def _pickle_foreign_checkpoint(case_dir: Path) -> None:
    """A valid pickle that is not a search checkpoint (e.g. another tool's file under the same name)."""
    (case_dir / "R" / "checkpoint.pkl").write_bytes(pickle.dumps({"generation": 1, "algorithm": None}))


def _torch_foreign_state(case_dir: Path) -> None:
    """A valid torch file that is not a train.py checkpoint: a bare state dict, no optimiser, no step."""
    import torch

    torch.save({"transformer.wte.weight": torch.zeros(4, 4)}, case_dir / "trained.ckpt" / "state.pt")


def _shards_of_another_tokenizer(case_dir: Path) -> None:
    """A real shard folder, written with a tokenizer trained here (not the model folder's)."""
    from lts.train.data import load_default_corpus
    from lts.train.shards import write_shards
    from lts.train.tokenizer import train_bpe_tokenizer

    corpus = load_default_corpus("pydoc")
    texts = {"train": corpus.train[:20], "validation": corpus.validation[:5]}
    write_shards(case_dir / "sh", train_bpe_tokenizer(texts["train"], vocab_size=300), texts, {"name": "pydoc part"})


CASES: list[Case] = [
    # ------------------------------------------------------------------ search.py
    Case("search-precision-unknown", "search.py", "unknown name", "--precision int4",
         (*SEARCH, "--precision", "int4"), "int4"),
    Case("search-config-precision-unknown", "search.py", "unknown name", "precision: int4 in the preset",
         (*SEARCH, "--config", "s.yaml"), "precision", files={"s.yaml": "precision: int4\n"}),
    Case("search-config-missing", "search.py", "missing file", "--config names a file that does not exist",
         (*SEARCH, "--config", "presets/nope.yaml"), "presets/nope.yaml"),
    Case("search-config-unclosed-quote", "search.py", "malformed YAML", "a YAML string that never closes",
         (*SEARCH, "--config", "s.yaml"), "malformed YAML", files={"s.yaml": 'objectives: "non_embedding_params\n'}),
    Case("search-config-a-list", "search.py", "malformed YAML", "the preset is a YAML list, not a mapping",
         (*SEARCH, "--config", "s.yaml"), "mapping", files={"s.yaml": "- generations\n- 3\n"}),
    Case("search-config-population-a-word", "search.py", "wrong type", "population: lots in the preset",
         ("--config", "s.yaml", *SEARCH[:4], *SEARCH[6:]), "population", files={"s.yaml": "population: lots\n"}),
    Case("search-population-a-word", "search.py", "wrong type", "--population many",
         (*SEARCH, "--population", "many"), "'many'"),
    Case("search-timeout-negative", "search.py", "out-of-range number", "--timeout -5",
         (*SEARCH, "--timeout", "-5"), "-5"),
    Case("search-threads-zero", "search.py", "out-of-range number", "--threads 0",
         (*SEARCH, "--threads", "0"), "threads"),
    Case("search-unknown-objective", "search.py", "unknown name", "an objective nobody registered",
         (*SEARCH, "--objectives", "non_embedding_params,perplexity"), "perplexity"),
    Case("search-ray-not-installed", "search.py", "missing package", "--engine ray where Ray is not installed",
         (*SEARCH, "--engine", "ray"), "pip install",
         files={"stub/ray.py": "raise ImportError(\"No module named 'ray'\")\n"}, env={"PYTHONPATH": "{case}/stub"}),
    Case("search-ray-address-refused", "search.py", "unreachable cluster", "--ray-address where nothing listens",
         (*SEARCH, "--engine", "ray", "--ray-address", "127.0.0.1:9"), "cannot reach a Ray cluster"),
    Case("search-ray-address-unroutable", "search.py", "unreachable cluster",
         "--ray-address on a network that never answers (TEST-NET-3): refused within seconds, no hang",
         (*SEARCH, "--engine", "ray", "--ray-address", "203.0.113.1:6379"), "cannot reach a Ray cluster"),
    Case("search-constraint-unknown-objective", "search.py", "unknown name", "a budget on an unknown objective",
         (*SEARCH, "--constraint", "onnx_speed<=3"), "onnx_speed"),
    Case("search-constraint-malformed", "search.py", "wrong type", "a budget without <= or >=",
         (*SEARCH, "--constraint", "onnx_memory_mb=300"), "onnx_memory_mb=300"),
    Case("search-constraint-zero-budget", "search.py", "out-of-range number", "a zero memory budget",
         (*SEARCH, "--constraint", "onnx_memory_mb<=0"), "> 0"),
    Case("search-constraint-impossible", "search.py", "out-of-range number",
         "a parameter budget no architecture of the space meets",
         (*SEARCH, "--constraint", "non_embedding_params>=1e12"), "impossible budget"),
    Case("search-context-too-long", "search.py", "out-of-range number", "--context beyond n_positions",
         (SEARCH[0], "non_embedding_params,onnx_decode_latency_s", *SEARCH[2:], "--context", "4096"), "4096"),
    Case("search-context-zero", "search.py", "out-of-range number", "--context 0",
         (*SEARCH, "--context", "0"), "context"),
    Case("search-unknown-target", "search.py", "unknown name", "--target tpu (only cpu is shipped)",
         (*SEARCH, "--target", "tpu"), "tpu"),
    Case("search-space-head-a-word", "search.py", "wrong type", "the space's n_head is a word",
         (*SEARCH, "--config", "s.yaml"), "n_head", files={"s.yaml": "space:\n  n_head: two\n"}),
    Case("search-cache-truncated", "search.py", "truncated SQLite cache",
         "--cache is the first 100 bytes of a real cache", (*SEARCH[:8], "--cache", "R/cache.sqlite", *SEARCH[10:]),
         "cache.sqlite", uses=("run",), prepare=_truncate("R/cache.sqlite", 100)),
    Case("search-cache-under-a-file", "search.py", "unwritable folder", "--cache inside a regular file",
         (*SEARCH[:8], "--cache", "afile/c.sqlite", *SEARCH[10:]), "afile", files={"afile": "a file\n"}),
    Case("search-run-dir-under-a-file", "search.py", "unwritable folder", "--run-dir inside a regular file",
         (*SEARCH, "--run-dir", "afile/run"), "afile", files={"afile": "a file\n"}),
    Case("search-resume-corrupt-checkpoint", "search.py", "incompatible checkpoint",
         "--resume where checkpoint.pkl is junk (job.json valid)", SEARCH_RESUME, "checkpoint.pkl",
         uses=("run",), files={"R/checkpoint.pkl": GARBAGE}),
    Case("search-resume-foreign-checkpoint", "search.py", "incompatible checkpoint",
         "--resume where checkpoint.pkl is a pickle of something else", SEARCH_RESUME, "checkpoint.pkl",
         uses=("run",), prepare=_pickle_foreign_checkpoint),
    Case("search-resume-job-not-json", "search.py", "malformed JSON", "--resume where job.json is not JSON",
         SEARCH_RESUME, "job.json", uses=("run",), files={"R/job.json": '{"generations": 1,'}),
    Case("search-resume-job-empty", "search.py", "empty file", "--resume where job.json is empty",
         SEARCH_RESUME, "job.json", uses=("run",), files={"R/job.json": ""}),
    # ------------------------------------------------------------------ python -m lts evaluate
    Case("evaluate-folder-missing", "lts evaluate", "missing file", "a models/<archid> folder that is not there",
         ("models/gpt2_000000000000", *EVAL[1:]), "gpt2_000000000000"),
    Case("evaluate-context-too-long", "lts evaluate", "out-of-range number", "--context beyond the model's n_positions",
         (*EVAL, "--context", "4096"), "4096", files={"arch/config.json": TINY_CONFIG}),
    Case("evaluate-config-empty", "lts evaluate", "empty file", "config.json is empty",
         EVAL, "config.json", files={"arch/config.json": ""}),
    Case("evaluate-config-yaml-not-json", "lts evaluate", "malformed JSON", "config.json holds YAML",
         EVAL, "not valid JSON", files={"arch/config.json": "n_layer: 2\nn_embd: 64\n"}),
    Case("evaluate-config-a-list", "lts evaluate", "malformed JSON", "config.json is a JSON list",
         EVAL, "JSON object", files={"arch/config.json": "[2, 64, 128, 2]"}),
    Case("evaluate-config-layer-a-word", "lts evaluate", "wrong type", "n_layer is a string",
         EVAL, "n_layer", files={"arch/config.json": TINY_CONFIG.replace('"n_layer": 2', '"n_layer": "two"')}),
    Case("evaluate-config-heads-do-not-divide", "lts evaluate", "out-of-range number", "n_embd 64 with n_head 3",
         EVAL, "n_head=3", files={"arch/config.json": TINY_CONFIG.replace('"n_head": 2', '"n_head": 3')}),
    Case("evaluate-seq-len-beyond-positions", "lts evaluate", "out-of-range number", "--seq-len 512 > n_positions 128",
         (*EVAL, "--seq-len", "512"), "512", files={"arch/config.json": TINY_CONFIG}),
    Case("evaluate-seq-len-a-word", "lts evaluate", "wrong type", "--seq-len long",
         (*EVAL, "--seq-len", "long"), "'long'", files={"arch/config.json": TINY_CONFIG}),
    Case("evaluate-unknown-target", "lts evaluate", "unknown name", "--target gpu9",
         (*EVAL, "--target", "gpu9"), "gpu9", files={"arch/config.json": TINY_CONFIG}),
    Case("evaluate-cache-truncated", "lts evaluate", "truncated SQLite cache",
         "--cache is the first 100 bytes of a real cache", (*EVAL[:-1], "R/cache.sqlite"), "cache.sqlite",
         uses=("run",), files={"arch/config.json": TINY_CONFIG}, prepare=_truncate("R/cache.sqlite", 100)),
    Case("evaluate-cache-junk", "lts evaluate", "corrupt file", "--cache is junk bytes",
         EVAL, "c.sqlite", files={"arch/config.json": TINY_CONFIG, "c.sqlite": GARBAGE}),
    Case("evaluate-cache-under-a-file", "lts evaluate", "unwritable folder", "--cache inside a regular file",
         (*EVAL[:-1], "afile/c.sqlite"), "afile", files={"arch/config.json": TINY_CONFIG, "afile": "a file\n"}),
    Case("evaluate-threads-zero", "lts evaluate", "out-of-range number", "--threads 0",
         (*EVAL, "--threads", "0"), "threads", files={"arch/config.json": TINY_CONFIG}),
    Case("evaluate-timeout-negative", "lts evaluate", "out-of-range number", "--timeout -1",
         (*EVAL, "--timeout", "-1"), "timeout", files={"arch/config.json": TINY_CONFIG}),
    # ------------------------------------------------------------------ generate_text.py
    Case("generate-corrupt-safetensors", "generate_text.py", "corrupt safetensors",
         "model.safetensors is junk", GENERATE, "model.safetensors", uses=("model",),
         files={"model/model.safetensors": GARBAGE}),
    Case("generate-truncated-safetensors", "generate_text.py", "corrupt safetensors",
         "model.safetensors cut after 1000 bytes", GENERATE, "model.safetensors", uses=("model",),
         prepare=_truncate("model/model.safetensors", 1000)),
    Case("generate-config-not-json", "generate_text.py", "malformed JSON", "the model's config.json is not JSON",
         GENERATE, "config.json", uses=("model",), files={"model/config.json": '{"model_type": "gpt2",'}),
    Case("generate-tokenizer-corrupt", "generate_text.py", "corrupt file", "tokenizer.json is junk",
         ("model", "tok", *GENERATE[2:]), "tok", uses=("model", "tokenizer"), files={"tok/tokenizer.json": GARBAGE}),
    Case("generate-unknown-hub-model", "generate_text.py", "unknown name", "a hub id, offline and not cached",
         ("nobody-xyz/no-such-lm", "model", *GENERATE[2:]), "nobody-xyz/no-such-lm", uses=("model",)),
    Case("generate-model-folder-missing", "generate_text.py", "missing file", "a model folder that is not there",
         ("./checkpoints/none", "model", *GENERATE[2:]), "checkpoints/none", uses=("model",)),
    Case("generate-model-is-a-file", "generate_text.py", "unknown name", "the model argument is a regular file",
         ("weights.bin", "model", *GENERATE[2:]), "weights.bin", uses=("model",), files={"weights.bin": GARBAGE}),
    Case("generate-top-k-a-word", "generate_text.py", "wrong type", "--top-k ten",
         (*GENERATE, "--top-k", "ten"), "'ten'", uses=("model",)),
    Case("generate-seed-negative", "generate_text.py", "out-of-range number", "--seed -1",
         (*GENERATE, "--seed", "-1"), "--seed", uses=("model",)),
    Case("generate-config-missing", "generate_text.py", "missing file", "--config names a file that does not exist",
         (*GENERATE, "--config", "g.yaml"), "g.yaml", uses=("model",)),
    Case("generate-config-unclosed-list", "generate_text.py", "malformed YAML", "a YAML list that never closes",
         (*GENERATE, "--config", "g.yaml"), "malformed YAML", uses=("model",), files={"g.yaml": "top_k: [5,\n"}),
    Case("generate-config-tokens-a-word", "generate_text.py", "wrong type", "max_new_tokens: ten in the preset",
         ("model", "model", "Once", "--config", "g.yaml"), "max-new-tokens", uses=("model",),
         files={"g.yaml": "max_new_tokens: ten\n"}),
    Case("generate-config-unknown-key", "generate_text.py", "unknown name", "a misspelt key in the preset",
         (*GENERATE, "--config", "g.yaml"), "temprature", uses=("model",), files={"g.yaml": "temprature: 0.5\n"}),
    Case("generate-onnx-cache-under-a-file", "generate_text.py", "unwritable folder",
         "--onnx-cache-dir inside a regular file", (*GENERATE, "--backend", "onnx", "--onnx-cache-dir", "afile/onnx"),
         "afile", uses=("model",), files={"afile": "a file\n"}),
    Case("generate-prompts-file-empty", "generate_text.py", "empty file", "--prompts-file is empty",
         ("model", "model", "--prompts-file", "p.txt", "--greedy"), "no prompts in", uses=("model",),
         files={"p.txt": ""}),
    Case("generate-prompts-file-missing", "generate_text.py", "missing file", "--prompts-file names no file",
         ("model", "model", "--prompts-file", "nope.txt", "--greedy"), "nope.txt", uses=("model",)),
    Case("generate-prompts-file-binary", "generate_text.py", "corrupt file", "--prompts-file is not text",
         ("model", "model", "--prompts-file", "p.txt", "--greedy"), "not UTF-8", uses=("model",),
         files={"p.txt": GARBAGE}),
    Case("generate-batch-size-zero", "generate_text.py", "out-of-range number", "--batch-size 0",
         ("model", "model", "--prompts-file", "p.txt", "--batch-size", "0"), "--batch-size", uses=("model",),
         files={"p.txt": "Once\n"}),
    Case("generate-prompt-too-long-in-file", "generate_text.py", "out-of-range number",
         "prompt 2 of the prompts file is longer than the context",
         ("model", "model", "--prompts-file", "p.txt", "--max-new-tokens", "8"), "prompt 2 of", uses=("model",),
         files={"p.txt": "Once\n" + "upon a time " * 200 + "\n"}),
    Case("generate-precision-unknown", "generate_text.py", "unknown name", "--precision int4",
         (*GENERATE, "--backend", "onnx", "--precision", "int4"), "int4", uses=("model",)),
    # ------------------------------------------------------------------ benchmark.py
    Case("benchmark-corrupt-safetensors", "benchmark.py", "corrupt safetensors", "model.safetensors is junk",
         BENCH, "model.safetensors", uses=("model",), files={"model/model.safetensors": GARBAGE}),
    Case("benchmark-empty-safetensors", "benchmark.py", "corrupt safetensors", "model.safetensors is empty",
         BENCH, "model.safetensors", uses=("model",), files={"model/model.safetensors": b""}),
    Case("benchmark-config-not-json", "benchmark.py", "malformed JSON", "the model's config.json is not JSON",
         BENCH, "config.json", uses=("model",), files={"model/config.json": "{'model_type': 'gpt2'}"}),
    Case("benchmark-prompts-json-malformed", "benchmark.py", "malformed JSON", "a prompts .json cut short",
         (*BENCH[:5], "--prompts-file", "p.json", *BENCH[7:]), "p.json", uses=("model",),
         files={"p.json": '["Hello", "Once'}),
    Case("benchmark-prompts-json-a-dict", "benchmark.py", "wrong type", "a prompts .json holding an object",
         (*BENCH[:5], "--prompts-file", "p.json", *BENCH[7:]), "JSON list", uses=("model",),
         files={"p.json": '{"prompt": "Hello"}'}),
    Case("benchmark-prompts-file-empty", "benchmark.py", "empty file", "an empty prompts file",
         (*BENCH[:5], "--prompts-file", "p.txt", *BENCH[7:]), "no prompts", uses=("model",), files={"p.txt": ""}),
    Case("benchmark-prompts-file-missing", "benchmark.py", "missing file", "--prompts-file that does not exist",
         (*BENCH[:5], "--prompts-file", "lists/p.txt", *BENCH[7:]), "lists/p.txt", uses=("model",)),
    Case("benchmark-out-under-a-file", "benchmark.py", "unwritable folder", "--out inside a regular file",
         (*BENCH, "--out", "afile/bench"), "afile", uses=("model",), files={"afile": "a file\n"}),
    Case("benchmark-unknown-hub-model", "benchmark.py", "unknown name", "a hub id, offline and not cached",
         ("nobody-xyz/tiny-lm-404", *BENCH[1:]), "nobody-xyz/tiny-lm-404"),
    Case("benchmark-model-folder-missing", "benchmark.py", "missing file", "a model folder that is not there",
         ("./runs/none", *BENCH[1:]), "runs/none"),
    Case("benchmark-model-without-weights", "benchmark.py", "missing file", "a folder with config.json only",
         ("arch", *BENCH[1:]), "no weights", files={"arch/config.json": TINY_CONFIG}),
    Case("benchmark-unknown-device", "benchmark.py", "unknown name", "--device tpu",
         (*BENCH, "--device", "tpu"), "tpu", uses=("model",)),
    Case("benchmark-repeats-a-word", "benchmark.py", "wrong type", "--repeats few",
         (*BENCH, "--repeats", "few"), "'few'", uses=("model",)),
    Case("benchmark-timeout-zero", "benchmark.py", "out-of-range number", "--timeout 0",
         (*BENCH, "--timeout", "0"), "timeout_s", uses=("model",)),
    Case("benchmark-threads-negative", "benchmark.py", "out-of-range number", "--threads -2",
         (*BENCH, "--threads", "-2"), "threads", uses=("model",)),
    Case("benchmark-config-unclosed-list", "benchmark.py", "malformed YAML", "a YAML list that never closes",
         (*BENCH, "--config", "b.yaml"), "malformed YAML", uses=("model",), files={"b.yaml": 'prompts: ["Hi",\n'}),
    Case("benchmark-config-tokens-a-word", "benchmark.py", "wrong type", "max_new_tokens: lots in the preset",
         ("model", "--out", "bench", "--config", "b.yaml", "--no-progress"), "max_new_tokens", uses=("model",),
         files={"b.yaml": "max_new_tokens: lots\n"}),
    # ------------------------------------------------------------------ train.py
    Case("train-model-folder-missing", "train.py", "missing file", "a models/<archid> folder that is not there",
         ("models/gpt2_000000000000", *TRAIN[1:]), "gpt2_000000000000"),
    Case("train-config-not-json", "train.py", "malformed JSON", "config.json in Python syntax",
         TRAIN, "not valid JSON", uses=("model",), files={"model/config.json": "{'n_layer': 2}"}),
    Case("train-config-empty", "train.py", "empty file", "config.json is empty",
         TRAIN, "config.json", uses=("model",), files={"model/config.json": ""}),
    Case("train-config-embd-a-word", "train.py", "wrong type", "n_embd is a string in config.json",
         TRAIN, "n_embd", uses=("model",),
         files={"model/config.json": TINY_CONFIG.replace('"n_embd": 64', '"n_embd": "sixty-four"')}),
    Case("train-tokenizer-in-model-corrupt", "train.py", "corrupt file", "the model folder's tokenizer.json is junk",
         TRAIN, "tokenizer", uses=("model",), files={"model/tokenizer.json": GARBAGE}),
    Case("train-preset-bad-indent", "train.py", "malformed YAML", "a preset with a stray indent",
         (*TRAIN, "--config", "t.yaml"), "malformed YAML", uses=("model",),
         files={"t.yaml": "max_steps: 10\n  lr: 0.1\n"}),
    Case("train-preset-lr-a-word", "train.py", "wrong type", "lr: fast in the preset",
         (*TRAIN, "--config", "t.yaml"), "lr", uses=("model",), files={"t.yaml": "lr: fast\n"}),
    Case("train-preset-unknown-key", "train.py", "unknown name", "epochs is not a setting",
         (*TRAIN, "--config", "t.yaml"), "epochs", uses=("model",), files={"t.yaml": "epochs: 3\n"}),
    Case("train-val-fraction-above-one", "train.py", "out-of-range number", "--val-fraction 1.5",
         (*TRAIN, "--val-fraction", "1.5"), "val-fraction", uses=("model",)),
    Case("train-lr-a-word", "train.py", "wrong type", "--lr fast", (*TRAIN, "--lr", "fast"), "'fast'",
         uses=("model",)),
    Case("train-seq-len-beyond-context", "train.py", "out-of-range number", "--seq-len 4096 > n_positions 128",
         (*TRAIN, "--seq-len", "4096"), "4096", uses=("model",)),
    Case("train-data-glob-matches-nothing", "train.py", "missing file", "--data with a glob that matches no file",
         (*TRAIN, "--data", "corpus/*.txt"), "corpus/*.txt", uses=("model",)),
    Case("train-unknown-corpus", "train.py", "unknown name", "--corpus wikipedia",
         (*TRAIN, "--corpus", "wikipedia"), "wikipedia", uses=("model",)),
    Case("train-unknown-hub-tokenizer", "train.py", "unknown name", "--tokenizer: a hub id, offline, not cached",
         (*TRAIN, "--tokenizer", "nobody-xyz/no-tokenizer"), "nobody-xyz/no-tokenizer", uses=("model",)),
    Case("train-tokenizer-corrupt", "train.py", "corrupt file", "--tokenizer folder whose tokenizer.json is junk",
         (*TRAIN, "--tokenizer", "tok"), "tok", uses=("model", "tokenizer"), files={"tok/tokenizer.json": GARBAGE}),
    Case("train-out-under-a-file", "train.py", "unwritable folder", "--out inside a regular file",
         (*TRAIN, "--out", "afile/trained"), "afile", uses=("model",), files={"afile": "a file\n"}),
    Case("train-resume-corrupt-state", "train.py", "incompatible checkpoint",
         "--resume where state.pt is junk (meta.json matches)", (*TRAIN, "--resume"), "state.pt",
         uses=("model", "train_ckpt"), files={"trained.ckpt/state.pt": GARBAGE}),
    Case("train-resume-foreign-state", "train.py", "incompatible checkpoint",
         "--resume where state.pt is a torch file of something else", (*TRAIN, "--resume"), "state.pt",
         uses=("model", "train_ckpt"), prepare=_torch_foreign_state),
    Case("report-run-missing", "lts report", "missing file", "a run folder that is not there", ("runs/nope",),
         "run folder not found"),
    Case("report-record-corrupt", "lts report", "corrupt file", "evaluations.jsonl with junk in its first line",
         ("R",), "corrupt at line 1", uses=("run",), prepare=lambda d: (d / "R" / "evaluations.jsonl").write_bytes(
             b"junk\n" + (d / "R" / "evaluations.jsonl").read_bytes())),
    Case("report-job-not-json", "lts report", "malformed JSON", "job.json cut short", ("R",), "job.json",
         uses=("run",), files={"R/job.json": '{"objectives": "non_embedding_params'}),
    Case("report-run-is-a-file", "lts report", "missing file", "RUN_DIR names a regular file", ("afile",),
         "run folder not found", files={"afile": "a file\n"}),
    Case("report-record-empty", "lts report", "empty file", "evaluations.jsonl is empty", ("R",),
         "holds no evaluation", uses=("run",), files={"R/evaluations.jsonl": ""}),
    Case("report-unknown-objective", "lts report", "unknown name", "job.json names an objective nobody registered",
         ("R",), "onnx_speed", uses=("run",), prepare=lambda d: (d / "R" / "job.json").write_text(
             (d / "R" / "job.json").read_text().replace("non_embedding_params,", "onnx_speed,"))),
    Case("train-device-cuda-absent", "train.py", "unavailable device", "--device cuda where no CUDA device exists",
         (*TRAIN, "--device", "cuda"), "no CUDA device", uses=("model",)),
    Case("train-fp16-on-cpu", "train.py", "unavailable device", "--dtype fp16 on the CPU",
         (*TRAIN, "--device", "cpu", "--dtype", "fp16"), "fp16", uses=("model",)),
    Case("train-grad-accum-zero", "train.py", "out-of-range number", "--grad-accum 0",
         (*TRAIN, "--grad-accum", "0"), "grad-accum", uses=("model",)),
    Case("train-shards-other-tokenizer", "train.py", "incompatible data",
         "--shards: a folder written with another tokenizer than the model folder's",
         (*TRAIN, "--shards", "sh"), "another tokenizer", uses=("model",), prepare=_shards_of_another_tokenizer),
    Case("train-shards-meta-corrupt", "train.py", "corrupt file", "--shards folder whose tokens.json is junk",
         (*TRAIN, "--shards", "sh"), "tokens.json", uses=("model",), files={"sh/tokens.json": GARBAGE}),
    Case("train-resume-meta-not-json", "train.py", "malformed JSON", "--resume where meta.json is not JSON",
         (*TRAIN, "--resume"), "meta.json", uses=("model", "train_ckpt"), files={"trained.ckpt/meta.json": "{"}),
    Case("train-resume-meta-a-list", "train.py", "wrong type", "--resume where meta.json is a JSON list",
         (*TRAIN, "--resume"), "meta.json", uses=("model", "train_ckpt"), files={"trained.ckpt/meta.json": "[1, 2]"}),
]


# ---------------------------------------------------------------------------- running the cases


@dataclass
class Outcome:
    """What one case did: the process's result and what changed in its folder."""

    returncode: int | None
    stdout: str
    stderr: str
    changed: list[str]


def _snapshot(root: Path) -> dict[str, tuple]:
    """relative path -> ("dir",) or (size, mtime_ns, sha1) for everything under `root` (__pycache__ ignored)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = ("dir",)
        for f in filenames:
            path = os.path.join(dirpath, f)
            st = os.lstat(path)
            with open(path, "rb") as fh:
                digest = hashlib.sha1(fh.read()).hexdigest()
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, digest)
    return out


def _diff(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    return ([f"created {p}" for p in sorted(set(after) - set(before))]
            + [f"modified {p}" for p in sorted(p for p in set(after) & set(before) if after[p] != before[p])]
            + [f"deleted {p}" for p in sorted(set(before) - set(after))])


class Inputs:
    """The real things the cases corrupt, each made once: a tiny model, its tokenizer, a real search run."""

    def __init__(self, root: Path, tiny_model_dir: Path, tiny_tokenizer_dir: Path) -> None:
        self.root, self.model, self.tokenizer = root, tiny_model_dir, tiny_tokenizer_dir
        self._run: Path | None = None
        self._lock = threading.Lock()

    def env(self, case_dir: Path) -> dict[str, str]:
        # HF_HOME stays the session's (tests/conftest.py): one of the case's own would be read by the libraries at
        # import, so every case would need a fresh interpreter instead of a fork (tests/clirun.py)
        return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                    LTS_CACHE_DIR=str(case_dir / "lts-cache"),
                    PYTHONDONTWRITEBYTECODE="1", TOKENIZERS_PARALLELISM="false",
                    CUDA_VISIBLE_DEVICES="")  # "no CUDA device" must hold on a GPU machine too

    def search_run(self) -> Path:
        """A real search (unmeasured objectives: fast, deterministic), made once: R/ with job.json, checkpoint.pkl
        and its cache R/cache.sqlite."""
        with self._lock:
            if self._run is None:
                where = self.root / "search-run"
                where.mkdir()
                proc = run_cli(
                    [str(REPO / "search.py"), "--objectives", "non_embedding_params,onnx_file_mb",
                     "--generations", "1", "--population", "2", "--run-dir", "R", "--cache", "R/cache.sqlite",
                     "--out", "models", "--assets-dir", "assets", "--no-progress"],
                    cwd=where, env=self.env(where), timeout=TIMEOUT_S)
                run = where / "R"
                # Only its files are needed (written before the front is reported), not a clean finish.
                missing = [f for f in ("job.json", "checkpoint.pkl", "cache.sqlite") if not (run / f).is_file()]
                assert not missing, (f"the real search left no {', '.join(missing)}", proc.stderr[-3000:])
                self._run = run
            return self._run

    def train_checkpoint(self, case_dir: Path, args: tuple[str, ...]) -> None:
        """trained.ckpt/ with a meta.json whose fingerprint matches the case's settings, and a state.pt to replace."""
        from lts.core import fileio
        from lts.core.settings import must_match
        from lts.train.checkpoint import META_FILE, STATE_FILE

        parser, ns = _load_train_script().parse_args(list(args))
        settings = parser.settings_from(ns)
        ckpt = case_dir / settings.checkpoint_dir
        ckpt.mkdir(parents=True)
        fileio.write_json(ckpt / META_FILE, {"fingerprint": must_match(settings), "train_digest": "0" * 16})
        (ckpt / STATE_FILE).write_bytes(b"replaced by the case")

    def prepare(self, case: Case, case_dir: Path) -> None:
        case_dir.mkdir(parents=True)
        if "model" in case.uses:
            shutil.copytree(self.model, case_dir / "model")
        if "tokenizer" in case.uses:
            shutil.copytree(self.tokenizer, case_dir / "tok")
        if "run" in case.uses:
            shutil.copytree(self.search_run(), case_dir / "R")
        if "train_ckpt" in case.uses:
            self.train_checkpoint(case_dir, case.args)
        for rel, content in case.files.items():
            path = case_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        if case.prepare is not None:
            case.prepare(case_dir)

    def run(self, case: Case, case_dir: Path) -> Outcome:
        self.prepare(case, case_dir)
        before = _snapshot(case_dir)
        try:
            env = {**self.env(case_dir), **{k: v.replace("{case}", str(case_dir)) for k, v in case.env.items()}}
            proc = run_cli([*CLIS[case.cli], *case.args], cwd=case_dir, env=env, timeout=TIMEOUT_S)
            outcome = Outcome(proc.returncode, proc.stdout, proc.stderr, [])
        except subprocess.TimeoutExpired as exc:
            def text(b: Any) -> str:
                return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
            outcome = Outcome(None, text(exc.stdout), text(exc.stderr) + f"\n(killed after {TIMEOUT_S} s)", [])
        outcome.changed = _diff(before, _snapshot(case_dir))
        return outcome


_TRAIN_SCRIPT: Any = None


def _load_train_script() -> Any:
    """train.py as a module (its parse_args makes the settings exactly as the script will)."""
    global _TRAIN_SCRIPT
    if _TRAIN_SCRIPT is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("lts_train_script", REPO / "train.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TRAIN_SCRIPT = module
    return _TRAIN_SCRIPT


@pytest.fixture(scope="module")
def fault_outcomes(request, tmp_path_factory, tiny_model_dir, tiny_tokenizer_dir) -> dict[str, Any]:
    """Every selected case, run side by side on first use: case id -> Future of its Outcome."""
    root = tmp_path_factory.mktemp("faults")
    inputs = Inputs(root, tiny_model_dir, tiny_tokenizer_dir)
    selected = {item.callspec.params["case"].id for item in request.session.items
                if getattr(item, "callspec", None) is not None and isinstance(item.callspec.params.get("case"), Case)}
    cases = [c for c in CASES if c.id in selected]
    pool = ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2)), thread_name_prefix="fault")
    # Slow cases (torch imported before the error) first, so the pool stays full to the end.
    order = sorted(cases, key=lambda c: c.cli not in ("generate_text.py", "train.py", "benchmark.py"))
    futures = {c.id: pool.submit(inputs.run, c, root / c.id) for c in order}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _verdict(case: Case, out: Outcome) -> list[str]:
    """The checks this outcome failed (empty: the case held)."""
    failed = []
    lines = out.stderr.strip().splitlines()
    if out.returncode != 2:
        failed.append(f"exit status {out.returncode}, not 2")
    if len(lines) != 1:
        failed.append(f"{len(lines)} lines on stderr, not 1")
    if "Traceback" in out.stderr + out.stdout:
        failed.append("a traceback")
    if len(lines) == 1 and case.expect not in lines[0]:
        failed.append(f"the line does not name {case.expect!r}")
    if out.changed:
        failed.append("wrote: " + ", ".join(out.changed[:8]) + (" ..." if len(out.changed) > 8 else ""))
    return failed


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, fault_outcomes, record_property):
    try:
        out = fault_outcomes[case.id].result()
    except Exception as exc:  # the case could not even be set up: it did not hold
        record_property("fault_case", {"id": case.id, "cli": case.cli, "kind": case.kind, "held": False,
                                       "failed": [f"not run: {type(exc).__name__}"]})
        raise
    failed = _verdict(case, out)
    record_property("fault_case", {"id": case.id, "cli": case.cli, "kind": case.kind, "held": not failed,
                                   "failed": failed})
    assert not failed, (f"{case.cli} {' '.join(case.args)}  ({case.bad})\n  failed: {'; '.join(failed)}\n"
                        f"  exit status: {out.returncode}\n  stderr: {out.stderr[-3000:]}\n"
                        f"  stdout: {out.stdout[-1000:]}")


def test_the_suite_covers_every_cli_and_every_kind_of_fault():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 30
    assert all(c.cli in CLIS and c.kind in KINDS and c.expect for c in CASES)
    assert {c.cli for c in CASES} == set(CLIS)
    assert {c.kind for c in CASES} == set(KINDS)
    assert all(sum(c.cli == cli for c in CASES) >= 5 for cli in CLIS)
    alike = {(c.cli, c.args, tuple(c.files.items()), c.prepare, tuple(c.env.items())) for c in CASES}
    assert len(alike) == len(CASES)  # no two cases alike
