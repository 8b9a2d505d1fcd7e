"""Token shards: a corpus tokenized once into memory-mapped binary files, reused by later runs and every rank.

A shard folder (``train.py --shards DIR``) holds::

    tokens.json            format, key and its versions, tokenizer identity, source, per split: shard files,
                           token counts, digest
    tokenizer/             the tokenizer that wrote the ids (save_pretrained), so the folder is self-describing
    train_00000.bin ...    raw token ids, little-endian uint16 (vocab <= 65,536) or uint32, eos between documents
    validation_00000.bin

The ids are exactly :func:`lts.train.data.tokenize_stream`'s (both go through
:func:`lts.train.data.encode_documents`), so training on shards draws the same batches as
training in memory; the digest in ``tokens.json`` is the one a checkpoint records for its
training tokens either way. The folder is written beside its final name and renamed into
place: a killed tokenization leaves no shard folder, only a temp one that is cleaned up.
A folder written with another tokenizer or from another source is refused (one line, exit 2):
what a folder holds is keyed by :func:`shard_key` (:mod:`lts.core.cachekeys`: the tokenizer's
identity, the source, and ``VERSIONS["token_shards"]``, which also names the format in ``tokens.json``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from lts.core import fileio
from lts.core.cachekeys import VERSIONS, cache_key, versions
from lts.core.errors import LTSError

# The folder's format, from the one version table: version 1 is the format written before keys were made
# in lts.core.cachekeys, so shard folders written then stay usable; a bump refuses them (tokenize again).
FORMAT = f"lts-token-shards/{VERSIONS['token_shards']}"
META_FILE = "tokens.json"
TOKENIZER_DIR = "tokenizer"
SPLITS = ("train", "validation")
DEFAULT_SHARD_TOKENS = 100_000_000  # 200 MB per file at uint16


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What makes two tokenizers produce the same ids: vocabulary size, eos, and the full tokenizer definition."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = backend.to_str()
    else:  # a slow tokenizer: its vocabulary is what it has
        definition = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id,
            "sha1": hashlib.sha1(definition.encode("utf-8")).hexdigest()}


def shard_key(identity: Mapping[str, Any], source: Mapping[str, Any]) -> str:
    """The key of the ids a shard folder holds (sha1 hex): the tokenizer's identity (:func:`tokenizer_identity`)
    and the source it was read from (its display ``name`` aside), at this ``VERSIONS["token_shards"]``."""
    return cache_key("token_shards", tokenizer=dict(identity),
                     source={k: v for k, v in source.items() if k != "name"})


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


class StreamDigest:
    """sha1 of a token stream as int32 bytes, fed piece by piece (equal to hashing the concatenated array)."""

    def __init__(self) -> None:
        self._h = hashlib.sha1()

    def update(self, ids: np.ndarray) -> None:
        self._h.update(np.ascontiguousarray(ids, dtype=np.int32).tobytes())

    def hexdigest(self) -> str:
        return self._h.hexdigest()[:16]


def stream_digest(tokens: Any) -> str:
    """The digest of a token stream: an in-memory array, or a :class:`ShardedTokens` (recorded when written)."""
    if isinstance(tokens, ShardedTokens):
        return tokens.digest
    d = StreamDigest()
    d.update(tokens)
    return d.hexdigest()


class ShardedTokens:
    """One split's shards as one read-only token sequence: ``len()`` and slices (``t[a:b]`` -> int32 array).

    Files are memory-mapped: only the windows a step reads are paged in, so a corpus larger than
    memory trains, and every rank on a machine shares the page cache.
    """

    def __init__(self, files: list[Path], counts: list[int], dtype: np.dtype, digest: str) -> None:
        self.digest, self.dtype = digest, dtype
        self._maps = [np.memmap(f, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype) for f, n in
                      zip(files, counts)]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("ShardedTokens supports contiguous slices only")
        start, stop, _ = key.indices(len(self))
        parts = []
        while start < stop:  # a window may run across a shard boundary
            i = int(np.searchsorted(self._starts, start, side="right")) - 1
            end = min(stop, int(self._starts[i + 1]))
            parts.append(self._maps[i][start - self._starts[i]:end - self._starts[i]])
            start = end
        return np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, dtype=np.int32)


class _SplitWriter:
    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.files: list[dict[str, Any]] = []
        self.digest = StreamDigest()
        self._fh, self._in_shard = None, 0

    def write(self, ids: np.ndarray) -> None:
        self.digest.update(ids)
        data = ids.astype(self.dtype)
        while len(data):
            if self._fh is None or self._in_shard == self.shard_tokens:
                self._next_file()
            take = data[:self.shard_tokens - self._in_shard]
            self._fh.write(take.tobytes())
            self._in_shard += len(take)
            self.files[-1]["tokens"] = self._in_shard
            data = data[len(take):]

    def _next_file(self) -> None:
        self.close()
        name = f"{self.split}_{len(self.files):05d}.bin"
        self._fh, self._in_shard = open(self.folder / name, "wb"), 0
        self.files.append({"file": name, "tokens": 0})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def record(self) -> dict[str, Any]:
        return {"files": self.files, "tokens": sum(f["tokens"] for f in self.files), "digest": self.digest.hexdigest()}


def write_shards(folder: Path, tokenizer: Any, documents: Mapping[str, Iterable[str]], source: Mapping[str, Any],
                 *, shard_tokens: int = DEFAULT_SHARD_TOKENS, progress: bool = False) -> None:
    """Tokenize each split's documents (an iterable: a stream is never held whole) into ``folder``, atomically."""
    from tqdm.auto import tqdm

    from lts.train.data import encode_documents

    dtype = token_dtype(len(tokenizer))
    with fileio.atomic_dir(folder, replace=False) as tmp:
        splits = {}
        for split in SPLITS:
            writer = _SplitWriter(tmp, split, dtype, shard_tokens)
            try:
                docs = tqdm(documents[split], desc=f"tokenizing {split}", unit="doc", disable=not progress,
                            leave=False)
                for ids in encode_documents(tokenizer, docs):
                    writer.write(ids)
            finally:
                writer.close()
            if not writer.files or writer.record()["tokens"] == 0:
                raise LTSError(f"empty corpus: the {split} split of {source.get('name', 'the source')} holds no text")
            splits[split] = writer.record()
        tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        identity = tokenizer_identity(tokenizer)
        fileio.write_json(tmp / META_FILE, {"format": FORMAT, "key": shard_key(identity, source),
                                            "versions": versions("token_shards"), "dtype": dtype.str,
                                            "tokenizer": identity, "source": dict(source), "splits": splits})


def read_meta(folder: Path) -> dict[str, Any]:
    """``tokens.json`` of a shard folder; LTSError when it is missing, unreadable or not ours."""
    path = folder / META_FILE
    if not path.is_file():
        raise LTSError(f"--shards {folder}: not a shard folder (no {META_FILE}); give an empty or new folder "
                       "to tokenize into")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        ok = meta.get("format") == FORMAT and all(s in meta["splits"] for s in SPLITS)
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise LTSError(f"--shards {folder}: {META_FILE} is corrupt or of another format (expected {FORMAT})")
    return meta


def check_compatible(folder: Path, meta: Mapping[str, Any], tokenizer: Any, source: Mapping[str, Any]) -> None:
    """Refuse shards written by another tokenizer, or from another corpus, than this run's.

    The folder's :func:`shard_key` (recorded in ``tokens.json``; recomputed from what it records
    for folders written before keys were recorded) must equal this run's; when it does not, the
    message says what differs.
    """
    mine, theirs = tokenizer_identity(tokenizer), meta["tokenizer"]
    recorded = meta.get("key") or shard_key(theirs, meta["source"])
    if recorded == shard_key(mine, source):
        return
    if mine != theirs:
        raise LTSError(f"--shards {folder} was written with another tokenizer ({theirs.get('class')}, vocab "
                       f"{theirs.get('vocab_size')}, sha1 {str(theirs.get('sha1'))[:10]}) than this run's "
                       f"({mine['class']}, vocab {mine['vocab_size']}, sha1 {mine['sha1'][:10]}); leave out "
                       "--tokenizer to use the folder's, or tokenize into another folder")
    differ = sorted(k for k in set(source) | set(meta["source"]) if k != "name" and
                    source.get(k) != meta["source"].get(k))
    if differ:
        raise LTSError(f"--shards {folder} holds another corpus ({', '.join(differ)} differ: written from "
                       f"{meta['source'].get('name')}); use the same data flags, or another folder")
    raise LTSError(f"--shards {folder}: {META_FILE} records another key ({str(recorded)[:10]}) than this run's "
                   "tokenizer and corpus make; tokenize again into a new folder")


def open_split(folder: Path, meta: Mapping[str, Any], split: str) -> ShardedTokens:
    rec = meta["splits"][split]
    dtype = np.dtype(meta["dtype"])
    files = [folder / f["file"] for f in rec["files"]]
    counts = [int(f["tokens"]) for f in rec["files"]]
    for f, n in zip(files, counts):
        if not f.is_file() or f.stat().st_size != n * dtype.itemsize:
            raise LTSError(f"--shards {folder}: {f.name} is missing or cut short (expected {n:,} tokens); "
                           "tokenize again into a new folder")
    return ShardedTokens(files, counts, dtype, rec["digest"])
