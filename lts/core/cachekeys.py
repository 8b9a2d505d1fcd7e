"""The one place LTS makes cache keys: explicit per-artifact versions and one key function.

Everything LTS keeps to reuse later is found again by a key made here: stored evaluations and
shape timings (``lts.cost.evaluator``), ONNX exports with a KV cache and their INT8 copies
(``lts.generate.onnx_kv``), and token shards (``lts.train.shards``). A key is the sha1 of the
canonical JSON of the artifact's name, its version (and the versions of what it is built from,
:data:`USES`), and the *data* that changes its value (settings, target key, configuration,
weight digest, tokenizer identity, library versions).

Rules that keep the caches honest and cheap:

- No source code is hashed anywhere: editing a comment or a docstring invalidates nothing.
- A change of *what* is measured or built is a one-line bump in :data:`VERSIONS`;
  ``tests/core/test_cachekeys.py`` pins the dict and one key, so such a change is always deliberate.
- Keys made before this module existed (whole-module source hashes, ``FORMAT_VERSION``,
  ``INT8_FORMAT``) simply miss: old entries stay unread, nothing is migrated or served stale.
- Each writer records, beside its entry, the versions its key was made with (:func:`versions`): a
  digest cannot say them, and ``lts cache prune`` removes what no key made now reaches (:func:`standing`).
  A new kind of cached artifact records them too.

Everything lives under one root, :func:`lts.core.fileio.cache_root`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

# One integer per kind of artifact. Bump one (by one) when what that artifact holds changes for the
# same inputs; every key of that kind (and of the kinds that USE it) then changes, so old entries miss.
VERSIONS: dict[str, int] = {
    # lts/core/onnxgraph.py and each family's graph writer (lts/families/gpt2/graph.py): the ONNX graphs LTS
    # writes itself (forward parts, KV graph, how weights fill them).
    # Bump: every evaluation is re-measured and every directly written ONNX export is rewritten.
    # (2: Llama's generation graph has a fused layer: ONNX's RMSNormalization, RotaryEmbedding and Attention.
    # 3: a Linear's weight read only transposed is stored transposed, "<name>.T": no second copy at load.)
    "graph": 3,
    # lts/cost (measure, timing, table) and the Evaluator: what a stored evaluation or shape timing holds
    # (probes, timing loop, memory window, reference graph's role). Bump: every stored evaluation and timing
    # is re-measured.
    # (3: the key's parts are named as the settings are: on_target, measure_settings, measure_key. 4: warm-up
    # stops after WARM_S, a loop past max_seconds after one run; the whole graph timed on the session its peak was
    # measured on; a stored timing carries its graph's features.)
    "evaluation": 4,
    # lts/generate/onnx_kv.py: the KV-cache export's interface (inputs/outputs, the torch export wrapper,
    # meta.json) and the KV graph it writes for a family's own model. Bump: every ONNX export is redone.
    # (Continues the old FORMAT_VERSION = 2; 4: the KV graph's fused attention.)
    "onnx_export": 4,
    # lts/cost/quantize.py: how quantize_model turns an fp32 graph into int8. Bump: every INT8 copy is
    # requantized and every int8 evaluation re-measured. (3: weights in 7 bits, exact sums on every x86 CPU.)
    "int8": 3,
    # lts/train/shards.py: the shard folder's layout and the ids it holds. Bump: folders written before are
    # refused (their tokens.json names another format) and must be tokenized again.
    "token_shards": 1,
}

# What each artifact is built from: their versions are part of its key too, so one bump reaches every
# artifact that depends on the changed code (int8 evaluations add "int8" themselves: only they use it).
USES: dict[str, tuple[str, ...]] = {
    "evaluation": ("graph",),
    "onnx_export": ("graph",),  # a standard GPT-2 is written with graph.py's KV graph
}


def canonical(data: Any) -> str:
    """The one JSON text of `data`: sorted keys, no spaces, ASCII, no NaN.

    Only JSON data (dict with str keys, list/tuple, str, int, float, bool, None) is accepted: a
    ``str()`` fallback would key objects by their addresses and silently never hit.
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def digest(data: Any) -> str:
    """sha1 (40 hex characters) of ``canonical(data)``."""
    return hashlib.sha1(canonical(data).encode("ascii")).hexdigest()


def check_version(owner: str, version: Any) -> None:
    """A declared ``version`` (of an objective, a probe) is a positive integer: ValueError naming `owner` if not."""
    from lts.core.settings import Integer

    Integer(ge=1)(f"{owner}: version", version)


def versions(artifact: str, uses: Iterable[str] = ()) -> dict[str, int]:
    """The versions a key of `artifact` depends on: its own, those of :data:`USES`, and `uses`."""
    names = (artifact, *USES.get(artifact, ()), *uses)
    unknown = [n for n in names if n not in VERSIONS]
    if unknown:
        raise KeyError(f"unknown cache artifact(s) {', '.join(unknown)} (known: {', '.join(VERSIONS)})")
    return {n: VERSIONS[n] for n in names}


def cache_key(artifact: str, *, uses: Iterable[str] = (), **parts: Any) -> str:
    """The cache key (sha1, 40 hex characters) of one `artifact` built from `parts`.

    ``parts`` are keyword arguments of JSON data: everything that changes the artifact's value and
    nothing else (a timeout, a display format, a path do not belong here). ``uses`` adds the
    versions of artifacts this one is built from beyond :data:`USES` (e.g. ``("int8",)`` for an
    evaluation of int8 graphs). The same inputs give the same key in every process and on every
    machine; raises TypeError/ValueError for parts that are not JSON data.
    """
    return digest({"artifact": artifact, "versions": versions(artifact, uses), "parts": parts})


def standing(recorded: Mapping[str, int], names: Iterable[str] = ()) -> str:
    """Whether a key made now can reach an entry whose key was made with the `recorded` versions.

    "old" when one is below today's: versions only go up, so no key made now or later reaches it. "newer"
    when one is above today's or names an artifact unknown here: a newer LTS wrote it, and its keys may.
    "current" when each recorded version, and each of `names` (what a key of that artifact uses), is
    recorded at today's; "unknown" when those recorded agree but some of `names` is not recorded.
    """
    if any(n in VERSIONS and v < VERSIONS[n] for n, v in recorded.items()):
        return "old"
    if any(n not in VERSIONS or v > VERSIONS[n] for n, v in recorded.items()):
        return "newer"
    return "current" if recorded and set(names) <= set(recorded) else "unknown"
