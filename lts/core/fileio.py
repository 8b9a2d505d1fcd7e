"""Atomic writes: an output file or folder is either the old one or the complete new one.

One implementation for every writer in LTS: files (``atomic_path`` and the ``write_*``
helpers) are written to a temp file beside their target and renamed over it; folders
(``atomic_dir``) are built in a temp folder beside their target and renamed into place, and
removed (``discard``) by the reverse: renamed aside, then deleted. Every temp entry is named
``.<target name>.<random><suffix>`` with a suffix of :data:`SCRATCH_SUFFIXES` (``is_scratch``),
so what a killed writer left behind can be told from what it wrote.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from lts.core.errors import LTSError

# What the writers below name their temp entries with: ".tmp" while being written, ".old" while being deleted.
SCRATCH_SUFFIXES = (".tmp", ".old")


def cache_root() -> Path:
    """The one folder under which LTS keeps everything it can rebuild (evaluations.sqlite, onnx/, optimum-venv/).

    ``$LTS_CACHE_DIR`` when set (non-empty), else ``$XDG_CACHE_HOME/lts`` when that is set, else
    ``~/.cache/lts``. What is found there is keyed by :mod:`lts.core.cachekeys`.
    """
    return cache_root_origin()[0]


def cache_root_origin() -> tuple[Path, str]:
    """:func:`cache_root` and what chose it: "$LTS_CACHE_DIR", "$XDG_CACHE_HOME/lts" or "~/.cache/lts"."""
    root = os.environ.get("LTS_CACHE_DIR")
    if root:
        return Path(root).expanduser(), "$LTS_CACHE_DIR"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "lts", "$XDG_CACHE_HOME/lts"
    return Path.home() / ".cache" / "lts", "~/.cache/lts"


def is_scratch(path: str | os.PathLike) -> bool:
    """True when `path` is named as this module's writers name a temp file or folder (a half-written or
    half-deleted entry while its writer runs; a leftover once it was killed)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(SCRATCH_SUFFIXES)


def discard(path: str | os.PathLike) -> None:
    """Remove the file or folder `path` so that no reader sees part of it: a folder is first renamed aside (a
    scratch name beside it: gone from `path` at once), then deleted. Already gone: nothing to do."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    try:
        os.replace(path, aside / path.name)
    except FileNotFoundError:
        pass
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def umask() -> int:
    """The process umask (read without changing it for longer than a moment)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def nan_to_none(d: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `d` with float NaN values as None (JSON has no NaN: ``null`` is what readers expect)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_dir(final: str | os.PathLike, *, replace: bool) -> Iterator[Path]:
    """Yield a temp folder beside `final` to build the folder in, then rename it into place.

    ``replace=True``: an existing `final` is swapped out whole (moved aside, then deleted), so readers
    see the old folder or the new one, never a mix. ``replace=False``: if `final` appears meanwhile
    (another process wrote the same content), theirs is kept and ours discarded.
    Nothing is left behind when the block raises.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    aside: Path | None = None
    try:
        yield tmp
        mask = umask()
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp/mkstemp make private entries; outputs are ordinary
        for f in tmp.rglob("*"):
            os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~mask)
        for _ in range(10):  # a concurrent writer may place the same folder between our steps
            try:
                os.rename(tmp, final)
                break
            except OSError:
                if not final.exists():
                    raise
                if not replace:
                    break
                aside = aside or Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
                try:
                    os.replace(final, aside / f"old{len(list(aside.iterdir()))}")
                except FileNotFoundError:
                    pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def check_creatable_dir(path: str | os.PathLike) -> Path:
    """Raise OSError unless `path` is, or could be made as, a writable folder; creates nothing."""
    path = Path(path).absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(20, "not a folder", str(probe))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(13, "permission denied", str(probe))
    return path


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and prove we can write in it (raises OSError otherwise)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".lts-write-test-", suffix=".tmp"):
        pass
    return path


def check_prompts(prompts: Sequence[str], source: str) -> tuple[str, ...]:
    if not prompts:
        raise LTSError(f"no prompts in {source}")
    for i, p in enumerate(prompts, 1):
        if not isinstance(p, str):
            raise LTSError(f"prompt {i} in {source} is not a string: {p!r}")
        if not p.strip():
            raise LTSError(f"prompt {i} in {source} is empty")
    return tuple(prompts)


def load_prompts(path: str | os.PathLike) -> tuple[str, ...]:
    """Prompts from a file (benchmark.py, generate_text.py): a JSON list of strings (``.json``), else one per line.

    In a text file blank lines are skipped (so a trailing newline is harmless); in a
    JSON list an empty string is an error.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LTSError(f"prompts file is not UTF-8 text: {path}") from None
    except OSError as exc:
        raise LTSError(f"cannot read prompts file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LTSError(f"malformed JSON in prompts file {path}: {exc}") from None
        if not isinstance(data, list):
            raise LTSError(f"prompts file {path} must hold a JSON list of strings")
        return check_prompts(data, str(path))
    return check_prompts([line.rstrip("\r") for line in text.split("\n") if line.strip()], str(path))
