"""The embedded store of evaluations: SQLite, safe for concurrent processes (WAL).

Two tables behind one small interface (:class:`Store`): ``results`` (one successful
evaluation per (archid, settings key, target fingerprint)) and ``timings`` (per-shape timings
that composed latencies reuse). The keys are made by :mod:`lts.core.cachekeys` (through
``EvalSettings.key``); a store kept from before those keys simply misses. The first value
stored under a key stays: a concurrent writer never replaces it (``INSERT OR IGNORE``), and
failures are never stored at all.

Beside each entry, a side table (``results_versions``, ``timings_versions``) records the
:data:`lts.core.cachekeys.VERSIONS` its key was made with, written in the same transaction:
a key is a digest and cannot say which versions made it, and ``lts cache prune`` removes what no
key made now can reach. Side tables, not a column, so that an LTS from before them still writes to
the same file (its rows are simply not recorded); they appear, empty, when a store is opened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Protocol

from lts.core import fileio
from lts.core.cachekeys import canonical
from lts.core.errors import LTSError


class Store(Protocol):
    """Where evaluations persist: text values in two tables, ``"results"`` and ``"timings"``.

    The contract (tested for every implementation by :mod:`lts.testing.store`):

    - ``get`` returns exactly the text ``put`` under that table and key, else None (a miss). Every
      part of the key counts: another archid, settings key or hardware id is a miss, never a
      neighbour's value; the two tables are separate.
    - The first value put under a key stays: a later ``put`` (a concurrent writer, a re-run) is
      ignored, never an error.
    - ``timings_ending(suffix)`` lists exactly the ``timings`` entries whose key ends with `suffix` (a key that
      merely contains it is not one), in any order.
    - ``path`` None: a store that keeps nothing (every ``get`` a miss). Otherwise what is put
      persists: a store opened again on the same path (another process, another day) serves it;
      missing folders are created.
    - One store may be used from several threads at once, and several processes may open and
      write one path at the same moment without losing a write. A store pickles (to a child
      process) as a handle on the same place.
    - A location that cannot hold a store, or a damaged one (not a store, truncated, corrupt
      pages), is one :class:`~lts.core.errors.LTSError` naming the path, at open or whenever the
      damage is met: never a traceback from the database library.

    ``put`` may be given the ``versions`` the key was made with (:func:`lts.core.cachekeys.versions`): a store
    that can keeps them beside the entry, for pruning; they never change what ``get`` returns.

    Stores keep whatever text they are given; it is the :class:`~lts.cost.evaluator.Evaluator` that
    puts successes only and never serves a failure it finds (also checked over every store).
    """

    path: Path | None

    def get(self, table: str, key: tuple[str, ...]) -> str | None: ...

    def put(self, table: str, key: tuple[str, ...], value: str, versions: Mapping[str, int] | None = None) -> None:
        ...

    def timings_ending(self, suffix: str) -> list[tuple[str, str]]:
        """Every ``(key, text)`` of the ``timings`` table whose key ends with `suffix` (the cost models fit on
        what one Target, hardware and measurement settings measured: ``lts.cost.predict``)."""
        ...


# Each table's key columns and value column.
TABLES = {"results": (("archid", "settings", "hardware"), "result"), "timings": (("key",), "timing")}


class Held(NamedTuple):
    """The entries of one table whose keys were made with the same versions (``recorded``: their canonical JSON,
    None for entries written before versions were recorded), how many there are and their bytes (key + value)."""

    table: str
    recorded: str | None
    entries: int
    bytes: int


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
                    "CREATE TABLE IF NOT EXISTS results_versions (archid TEXT, settings TEXT, hardware TEXT,"
                    " versions TEXT, PRIMARY KEY (archid, settings, hardware));"
                    "CREATE TABLE IF NOT EXISTS timings_versions (key TEXT PRIMARY KEY, versions TEXT);"
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

    def put(self, table: str, key: tuple[str, ...], value: str, versions: Mapping[str, int] | None = None) -> None:
        """Keep `value` under `key` unless one is there; `versions` (those the key was made with) beside it."""
        if not self.path:
            return
        columns = TABLES[table][0]
        marks = ", ".join("?" * len(columns))
        try:
            with self._transaction("BEGIN") as conn:
                conn.execute(f"INSERT OR IGNORE INTO {table} VALUES ({marks}, ?, ?)", (*key, value, time.time()))
                if versions is not None:  # one key, one set of versions: a row already there gets them too
                    conn.execute(f"INSERT OR IGNORE INTO {table}_versions VALUES ({marks}, ?)",
                                 (*key, canonical(dict(versions))))
        except sqlite3.Error as exc:
            raise LTSError(f"cannot use cache {self.path}: {exc}") from None

    def timings_ending(self, suffix: str) -> list[tuple[str, str]]:
        if not self.path or not suffix:
            return []
        try:
            rows = self._conn().execute("SELECT key, timing FROM timings WHERE substr(key, -?) = ?",
                                        (len(suffix), suffix)).fetchall()
        except sqlite3.Error as exc:
            raise LTSError(f"cannot use cache {self.path}: {exc}") from None
        return [(k, v) for k, v in rows]

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute(begin)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def held(self) -> list[Held]:
        """What the store holds, per table and recorded versions."""
        out: list[Held] = []
        if not self.path:
            return out
        try:
            for table in TABLES:
                rows = self._conn().execute(
                    f"SELECT v.versions, count(*), coalesce(sum({_bytes(table, 'r')}), 0) FROM {table} r"
                    f" LEFT JOIN {table}_versions v USING ({', '.join(TABLES[table][0])}) GROUP BY v.versions")
                out += [Held(table, *row) for row in rows]
        except sqlite3.Error as exc:
            raise LTSError(f"cannot use cache {self.path}: {exc}") from None
        return out

    def remove(self, groups: Iterable[tuple[str, str | None]]) -> list[Held]:
        """Delete, in one transaction, every entry of each ``(table, recorded)`` group (:meth:`held`), and
        versions rows left without their entry; returns what was deleted. An entry written meanwhile with
        other versions is untouched; one of a listed group is deleted with its group."""
        done: list[Held] = []
        if not self.path:
            return done
        try:
            with self._transaction("BEGIN IMMEDIATE") as conn:
                for table, recorded in groups:
                    where, args = _group(table, recorded)
                    entries, size = conn.execute(f"SELECT count(*), coalesce(sum({_bytes(table, table)}), 0)"
                                                 f" FROM {table} WHERE {where}", args).fetchone()
                    conn.execute(f"DELETE FROM {table} WHERE {where}", args)
                    done.append(Held(table, recorded, entries, size))
                for table, (columns, _) in TABLES.items():
                    conn.execute(f"DELETE FROM {table}_versions WHERE NOT EXISTS (SELECT 1 FROM {table} r WHERE "
                                 + " AND ".join(f"r.{c} = {table}_versions.{c}" for c in columns) + ")")
        except sqlite3.Error as exc:
            raise LTSError(f"cannot use cache {self.path}: {exc}") from None
        return done

    def compact(self, wait_s: float = 5.0) -> bool:
        """Give the space of deleted entries back to the disk (VACUUM); False when a writer kept the store busy
        for `wait_s` (the space is then reused by later entries)."""
        if not self.path:
            return True
        conn = sqlite3.connect(self.path, timeout=wait_s, isolation_level=None)
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()

    def __getstate__(self) -> dict[str, Any]:  # connections stay behind (e.g. when sent to a Ray worker)
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


def _bytes(table: str, alias: str) -> str:
    """SQL: the bytes of one entry of `table` (as `alias`): its key and its value, in UTF-8."""
    columns, value = TABLES[table]
    return " + ".join(f"length(CAST({alias}.{c} AS BLOB))" for c in (*columns, value))


def _group(table: str, recorded: str | None) -> tuple[str, tuple[str, ...]]:
    """SQL condition on `table` for the entries of one :class:`Held` group, and its arguments."""
    match = " AND ".join(f"v.{c} = {table}.{c}" for c in TABLES[table][0])
    if recorded is None:
        return f"NOT EXISTS (SELECT 1 FROM {table}_versions v WHERE {match})", ()
    return f"EXISTS (SELECT 1 FROM {table}_versions v WHERE {match} AND v.versions = ?)", (recorded,)
