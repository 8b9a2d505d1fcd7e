"""The :class:`~lts.cost.store.Store` contract as tests: subclass :class:`StoreContract`, provide ``store_factory``.

``store_factory(path)`` opens the store kept at `path` (a file or folder that may not exist yet;
None: a store that keeps nothing). It must be picklable (a class, or a module-level function): the
clause about two writing processes calls it in each of them.
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import pickle
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from lts.core.errors import LTSError
from lts.cost.store import Store
from lts.families import arch_from_dict

StoreFactory = Callable[[Any], Store]

RESULT_KEY = ("gpt2_0123456789ab", "settings-key", "hardware-id")  # (archid, settings key, hardware id)
TIMING_KEY = ("block:(64, 128, 2):measurement-key:hardware-id",)
WRITES_PER_PROCESS = 200
SHARED_KEYS = 20  # keys both processes write, each its own value


def _write_many(factory: StoreFactory, path: str, who: int, together: Any) -> None:
    """One of the two concurrent writers. `together` is a barrier of both: they open the new store at the same
    moment, then meet again before every write, so each write starts while the other process starts its own,
    however the two are scheduled (an event set once let one writer finish before the other began)."""
    try:
        together.wait(60)
        store = factory(path)
        for i in range(WRITES_PER_PROCESS):
            together.wait(60)
            store.put("results", (f"p{who}-{i}", "s", "h"), f"value {who}-{i}")
            if i < SHARED_KEYS:
                store.put("timings", (f"shared-{i}",), f"from {who}")
    except BaseException:
        together.abort()  # the other writer stops at once instead of waiting out its timeout
        raise


def _read_in_child(store: Store, key: tuple[str, ...], out: Any) -> None:
    out.put(store.get("results", key))


ROWS = 200  # in a damaged-store test: a file of some 100 pages, written in a fraction of a second


def _a_written_store(factory: StoreFactory, path: Path, rows: int = ROWS) -> None:
    """A store at `path` with `rows` results, at rest in its file: the store is dropped and collected, so its
    connections close (SQLite then moves its write-ahead log into the file and deletes the log)."""
    store = factory(path)
    for i in range(rows):
        store.put("results", (f"a{i}", "s", "h"), "x" * 2000)
    del store
    gc.collect()  # a connection can sit in a reference cycle: only the collector closes it


class StoreContract:
    """The clauses every :class:`~lts.cost.store.Store` keeps. Fixture to provide: ``store_factory``."""

    @pytest.fixture
    def store(self, store_factory: StoreFactory, tmp_path: Path) -> Store:
        return store_factory(tmp_path / "store" / "evaluations.sqlite")

    # ---- get / put
    def test_a_key_never_put_is_a_miss(self, store: Store) -> None:
        assert store.get("results", RESULT_KEY) is None
        assert store.get("timings", TIMING_KEY) is None

    def test_get_returns_exactly_the_text_put(self, store: Store) -> None:
        texts = {"results": json.dumps({"archid": "é ✓ \x00 null", "values": [1.5, None]}),
                 "timings": "t" * 2**20}  # non-ASCII and NUL; one MiB
        store.put("results", RESULT_KEY, texts["results"])
        store.put("timings", TIMING_KEY, texts["timings"])
        assert store.get("results", RESULT_KEY) == texts["results"]
        assert store.get("timings", TIMING_KEY) == texts["timings"]

    def test_every_part_of_the_key_counts(self, store: Store) -> None:
        """Another archid, another settings key or another hardware id is a miss, never a neighbour's value."""
        store.put("results", RESULT_KEY, "stored")
        for i, what in enumerate(("archid", "settings", "hardware")):
            other = tuple(part + "x" if j == i else part for j, part in enumerate(RESULT_KEY))
            assert store.get("results", other) is None, f"a different {what} was served the stored value"
        store.put("timings", TIMING_KEY, "stored")
        assert store.get("timings", (TIMING_KEY[0] + "x",)) is None

    def test_tables_are_separate(self, store: Store) -> None:
        store.put("timings", ("k",), "a timing")
        store.put("results", ("k", "s", "h"), "a result")
        assert store.get("timings", ("k",)) == "a timing"
        assert store.get("results", ("k", "s", "h")) == "a result"

    def test_timings_ending_lists_exactly_the_keys_with_that_suffix(self, store: Store) -> None:
        store.put("timings", ("a:m1:h1",), "one")
        store.put("timings", ("b:m1:h1",), "two")
        store.put("timings", ("c:m1:h1x",), "contains the suffix, does not end with it")
        store.put("timings", ("d:m2:h1",), "another suffix")
        store.put("results", ("e", "m1", "h1"), "another table")
        assert sorted(store.timings_ending(":m1:h1")) == [("a:m1:h1", "one"), ("b:m1:h1", "two")]
        assert store.timings_ending(":m9:h9") == []

    def test_the_first_value_stays(self, store: Store) -> None:
        """A concurrent writer (or a re-run) never replaces what is stored under a key."""
        store.put("results", RESULT_KEY, "first")
        store.put("results", RESULT_KEY, "second")
        assert store.get("results", RESULT_KEY) == "first"

    # ---- where it lives
    def test_no_path_keeps_nothing(self, store_factory: StoreFactory) -> None:
        store = store_factory(None)
        assert store.path is None
        store.put("results", RESULT_KEY, "value")
        assert store.get("results", RESULT_KEY) is None

    def test_missing_folders_are_created(self, store_factory: StoreFactory, tmp_path: Path) -> None:
        store = store_factory(tmp_path / "a" / "b" / "evaluations.sqlite")
        store.put("results", RESULT_KEY, "value")
        assert store.get("results", RESULT_KEY) == "value"
        assert (tmp_path / "a" / "b").is_dir()

    def test_values_persist_across_reopen(self, store_factory: StoreFactory, tmp_path: Path) -> None:
        path = tmp_path / "evaluations.sqlite"
        first = store_factory(path)
        first.put("results", RESULT_KEY, "kept")
        first.put("timings", TIMING_KEY, "kept too")
        del first
        again = store_factory(path)
        assert again.get("results", RESULT_KEY) == "kept"
        assert again.get("timings", TIMING_KEY) == "kept too"

    def test_a_pickled_copy_in_another_process_sees_the_same_store(self, store: Store) -> None:
        store.put("results", RESULT_KEY, "seen there")
        copy = pickle.loads(pickle.dumps(store))
        assert copy.get("results", RESULT_KEY) == "seen there"
        ctx = mp.get_context("spawn")  # a fresh interpreter: nothing inherited but what pickling sends
        out = ctx.Queue()
        child = ctx.Process(target=_read_in_child, args=(store, RESULT_KEY, out))
        child.start()
        got = out.get(timeout=60)
        child.join(60)
        assert child.exitcode == 0 and got == "seen there"

    # ---- concurrency
    def test_threads_share_one_store(self, store: Store) -> None:
        errors: list[BaseException] = []

        def write(who: int) -> None:
            try:
                for i in range(50):
                    store.put("results", (f"t{who}-{i}", "s", "h"), f"{who}-{i}")
                    assert store.get("results", (f"t{who}-{i}", "s", "h")) == f"{who}-{i}"
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert all(store.get("results", (f"t{w}-{i}", "s", "h")) == f"{w}-{i}" for w in range(4) for i in range(50))

    def test_two_processes_create_and_write_one_store_at_once(self, store_factory: StoreFactory,
                                                              tmp_path: Path) -> None:
        """Two searches sharing a cache: both open a new one at the same moment and write; nothing is lost."""
        path = tmp_path / "shared.sqlite"
        ctx = mp.get_context("spawn")
        together = ctx.Barrier(2)
        writers = [ctx.Process(target=_write_many, args=(store_factory, str(path), w, together)) for w in (0, 1)]
        for p in writers:
            p.start()
        for p in writers:
            p.join(120)
        assert [p.exitcode for p in writers] == [0, 0], "a writer failed (see its traceback above)"
        store = store_factory(path)
        missing = [(w, i) for w in (0, 1) for i in range(WRITES_PER_PROCESS)
                   if store.get("results", (f"p{w}-{i}", "s", "h")) != f"value {w}-{i}"]
        assert not missing, f"{len(missing)} writes lost, e.g. {missing[:5]}"
        assert all(store.get("timings", (f"shared-{i}",)) in ("from 0", "from 1") for i in range(SHARED_KEYS))

    # ---- damage
    def test_a_file_that_is_not_a_store_is_one_clear_error(self, store_factory: StoreFactory, tmp_path: Path) -> None:
        path = tmp_path / "evaluations.sqlite"
        path.write_bytes(b"not a database, just bytes\n" * 200)
        with pytest.raises(LTSError, match="evaluations.sqlite"):
            store_factory(path).get("results", RESULT_KEY)

    def test_a_truncated_file_is_one_clear_error(self, store_factory: StoreFactory, tmp_path: Path) -> None:
        path = tmp_path / "evaluations.sqlite"
        _a_written_store(store_factory, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(LTSError, match="evaluations.sqlite"):
            store = store_factory(path)
            for i in range(ROWS):
                store.get("results", (f"a{i}", "s", "h"))

    def test_a_corrupt_page_is_one_clear_error(self, store_factory: StoreFactory, tmp_path: Path) -> None:
        """Bytes overwritten in the middle of the file (its size intact): an LTSError naming it, not a traceback
        from the database library, whenever the damage is met."""
        path = tmp_path / "evaluations.sqlite"
        _a_written_store(store_factory, path)
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle: middle + 8192] = b"\xff" * 8192
        path.write_bytes(bytes(data))
        with pytest.raises(LTSError, match="evaluations.sqlite"):
            store = store_factory(path)
            for i in range(ROWS):
                store.get("results", (f"a{i}", "s", "h"))
            store.put("results", ("new", "s", "h"), "x" * 4096)

    def test_an_unusable_location_is_one_clear_error(self, store_factory: StoreFactory, tmp_path: Path) -> None:
        blocker = tmp_path / "a-file"
        blocker.write_text("a file where the store's folder should be")
        with pytest.raises(LTSError, match="a-file"):
            store_factory(blocker / "evaluations.sqlite").put("results", RESULT_KEY, "value")

    # ---- as the evaluator uses it
    def test_only_successes_are_stored_and_served(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        """Over any store, a failure is never stored, and one found stored (an older version) is never served."""
        from lts.cost.evaluator import EvalResult, EvalSettings, Evaluator

        ok, bad = (arch_from_dict({"n_layer": 1, "n_embd": d, "n_inner": 2 * d, "n_head": 2}) for d in (32, 48))
        monkeypatch.setenv("LTS_FAULT", f"evaluate:raise:{bad.archid}")
        evaluator = Evaluator(EvalSettings(on_target=False), store=store)
        assert not evaluator.evaluate(bad).ok
        assert evaluator.evaluate(ok).ok
        settings_key, hardware = EvalSettings(on_target=False).key(), evaluator.hardware["id"]
        assert store.get("results", (bad.archid, settings_key, hardware)) is None, "a failure was stored"
        assert store.get("results", (ok.archid, settings_key, hardware)) is not None, "a success was not stored"
        hit = Evaluator(EvalSettings(on_target=False), store=store).evaluate(ok)
        assert hit.ok and hit.cached, "a stored success was not served"

        stale = EvalResult(bad.archid, bad, {}, status="failed: stored by an older version")
        store.put("results", (bad.archid, settings_key, hardware), json.dumps(stale.to_json()))
        assert Evaluator(EvalSettings(on_target=False), store=store).cached(bad) is None, "a failure was served"


__all__ = ["StoreContract", "StoreFactory"]
