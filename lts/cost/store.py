"""The embedded store of evaluations: SQLite, safe for concurrent processes (WAL).

Two tables behind one small interface (:class:`Store`): ``results`` (one successful
evaluation per (archid, settings key, target fingerprint)) and ``timings`` (per-shape timings
that composed latencies reuse). The keys are made by :mod:`lts.core.cachekeys` (through
``EvalSettings.key``); a store kept from before those keys simply misses. The first value
stored under a key stays: a concurrent writer never replaces it (``INSERT OR IGNORE``), and
failures are never stored at all.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from lts.core import fileio
from lts.core.errors import LTSError


class Store(Protocol):
    """Where evaluations persist: text values in two tables, ``"results"`` and ``"timings"``.

    The contract (tested for every implementation by :mod:`lts.testing.store`):

    - ``get`` returns exactly the text ``put`` under that table and key, else None (a miss). Every
      part of the key counts: another archid, settings key or hardware id is a miss, never a
      neighbour's value; the two tables are separate.
    - The first value put under a key stays: a later ``put`` (a concurrent writer, a re-run) is
      ignored, never an error.
    - ``path`` None: a store that keeps nothing (every ``get`` a miss). Otherwise what is put
      persists: a store opened again on the same path (another process, another day) serves it;
      missing folders are created.
    - One store may be used from several threads at once, and several processes may open and
      write one path at the same moment without losing a write. A store pickles (to a child
      process) as a handle on the same place.
    - A location that cannot hold a store, or a damaged one (not a store, truncated, corrupt
      pages), is one :class:`~lts.core.errors.LTSError` naming the path, at open or whenever the
      damage is met: never a traceback from the database library.

    Stores keep whatever text they are given; it is the :class:`~lts.cost.evaluator.Evaluator` that
    puts successes only and never serves a failure it finds (also checked over every store).
    """

    path: Path | None

    def get(self, table: str, key: tuple[str, ...]) -> str | None: ...

    def put(self, table: str, key: tuple[str, ...], value: str) -> None: ...


def default_cache_path() -> Path:
    """``evaluations.sqlite`` under :func:`lts.core.fileio.cache_root`: ``$LTS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/lts``, else ``~/.cache/lts`` (the same root as every other LTS cache)."""
    return fileio.cache_root() / "evaluations.sqlite"


class SQLiteStore:
    """SQLite file store (no file: a store that keeps nothing). One connection per thread."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self._local = threading.local()
        if self.path:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._init_schema()
            except (sqlite3.Error, OSError) as exc:
                raise LTSError(f"cannot use cache {self.path}: {exc}") from None

    def _init_schema(self, wait_s: float = 60.0) -> None:
        """WAL mode and the tables. Switching to WAL takes a lock SQLite does not wait for (its busy
        handler is not used there): two processes opening a new cache at once would see "database is
        locked", so that step is retried until the other one is done."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._conn().executescript(
                    "PRAGMA journal_mode=WAL;"
                    "CREATE TABLE IF NOT EXISTS results (archid TEXT, settings TEXT, hardware TEXT, result TEXT,"
                    " created REAL, PRIMARY KEY (archid, settings, hardware));"
                    "CREATE TABLE IF NOT EXISTS timings (key TEXT PRIMARY KEY, timing TEXT, created REAL);"
                )
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._local.conn = conn
        return conn

    def get(self, table: str, key: tuple[str, ...]) -> str | None:
        if not self.path:
            return None
        try:
            if table == "results":
                row = self._conn().execute("SELECT result FROM results WHERE archid=? AND settings=? AND hardware=?",
                                           key).fetchone()
            else:
                row = self._conn().execute("SELECT timing FROM timings WHERE key=?", key).fetchone()
        except sqlite3.Error as exc:  # damage found only now (a corrupt page): one clear error, as at open
            raise LTSError(f"cannot use cache {self.path}: {exc}") from None
        return row[0] if row else None

    def put(self, table: str, key: tuple[str, ...], value: str) -> None:
        if not self.path:
            return
        try:
            if table == "results":
                self._conn().execute("INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?)",
                                     (*key, value, time.time()))
            else:
                self._conn().execute("INSERT OR IGNORE INTO timings VALUES (?, ?, ?)", (*key, value, time.time()))
        except sqlite3.Error as exc:
            raise LTSError(f"cannot use cache {self.path}: {exc}") from None

    def __getstate__(self) -> dict[str, Any]:  # connections stay behind (e.g. when sent to a Ray worker)
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])
