"""`lts cache`: the size of each kind of entry, and `prune`, which removes exactly what no key made now can reach.

One cache is built (``template``) and copied into each test's ``$LTS_CACHE_DIR``: stored evaluations (fp32 and
int8, from a real Evaluator), ONNX exports and an INT8 copy (of a real tiny model), at today's versions; beside them
entries written with an older version, with a newer one, and before versions were recorded, a token shard folder
of each, temp leftovers old and fresh, and a venv that is not LTS's to remove.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from clirun import run_cli
from onnx import helper

from lts.core import cachekeys
from lts.core.cachekeys import VERSIONS, versions
from lts.cost.evaluator import EvalSettings, Evaluator
from lts.cost.store import SQLiteStore, default_cache_path
from lts.cost.target import CPUTarget
from lts.families import exported
from lts.families.gpt2 import ArchConfig

OBJECTIVES = ["non_embedding_params"]  # no measurement: an evaluation is stored in milliseconds
FP32 = EvalSettings.create(on_target=False, objectives=OBJECTIVES, target=CPUTarget(threads=1))
INT8 = EvalSettings.create(on_target=False, objectives=OBJECTIVES, target=CPUTarget(threads=1, precision="int8"))
A, B, C = (ArchConfig(n, 64, 128, 2, vocab_size=512, n_positions=64) for n in (1, 2, 3))
DAY = 86400


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in [path, *path.rglob("*")] if f.is_file())


def _folder(path: Path, meta_name: str, meta: dict, payload: int) -> Path:
    path.mkdir(parents=True)
    (path / meta_name).write_text(json.dumps(meta))
    (path / "data.bin").write_bytes(b"x" * payload)
    return path


def _rows(db: Path) -> dict[tuple[str, tuple], str]:
    """Every stored entry: (table, key) -> value, read with sqlite3 itself."""
    with closing(sqlite3.connect(db)) as conn:
        out = {("results", tuple(r[:3])): r[3] for r in conn.execute("SELECT archid, settings, hardware, result "
                                                                         "FROM results")}
        out.update({("timings", (r[0],)): r[1] for r in conn.execute("SELECT key, timing FROM timings")})
    return out


def _bytes(rows) -> int:
    return sum(len("".join((*key, value)).encode()) for (_, key), value in rows)


def _evaluator(settings: EvalSettings) -> Evaluator:
    return Evaluator(settings, cache_path=default_cache_path())


def _evaluate(settings: EvalSettings, config: ArchConfig, monkeypatch: pytest.MonkeyPatch, **bump: int) -> None:
    """Store `config`'s evaluation as an LTS whose versions differ from today's by `bump` would."""
    with monkeypatch.context() as m:
        for name, by in bump.items():
            m.setitem(VERSIONS, name, VERSIONS[name] + by)
        assert _evaluator(settings).evaluate(config).ok


def _build(root: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Fill the cache at `root` ($LTS_CACHE_DIR); returns the names of the entries that stand each way."""
    from transformers import AutoModelForCausalLM

    from lts.generate.onnx_kv import cached_kv_onnx

    for settings in (FP32, INT8):  # today's
        _evaluate(settings, A, monkeypatch)
    _evaluate(FP32, B, monkeypatch, evaluation=-1)  # written before the last evaluation bump
    _evaluate(INT8, B, monkeypatch, int8=-1)        # before the last int8 bump
    _evaluate(FP32, C, monkeypatch, evaluation=+1)  # by a newer LTS
    store = SQLiteStore(root / "evaluations.sqlite")
    store.put("results", ("legacy", "0" * 40, "hw"), '{"written": "before versions were recorded"}')
    store.put("timings", ("block:today",), '{"median_s": 1}', versions=versions("evaluation"))
    store.put("timings", ("block:old-graph",), '{"median_s": 2}', versions={**versions("evaluation"), "graph": 0})
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    fp32, _ = cached_kv_onnx(model)
    int8, _ = cached_kv_onnx(model, precision="int8")
    onnx = root / "onnx"
    now = versions("onnx_export")
    _folder(onnx / ("1" * 40), "meta.json", {"versions": {**now, "onnx_export": now["onnx_export"] - 1}}, 1000)
    _folder(onnx / ("2" * 40), "meta.json", {"format": now["onnx_export"] - 1}, 2000)  # old, as meta.json said then
    _folder(onnx / ("3" * 40), "meta.json", {"format": now["onnx_export"]}, 3000)  # graph's version not recorded
    _folder(onnx / f"{'4' * 40}-int8-{'5' * 40}", "meta.json",
            {"precision": "int8", "versions": {**now, "int8": VERSIONS["int8"] - 1}}, 4000)
    shards = root / "shards"
    _folder(shards / "today", "tokens.json", {"versions": versions("token_shards")}, 500)
    _folder(shards / "then", "tokens.json", {"format": f"lts-token-shards/{VERSIONS['token_shards']}"}, 600)
    _folder(shards / "old", "tokens.json", {"versions": {"token_shards": VERSIONS["token_shards"] - 1}}, 700)
    stale = _folder(onnx / f".{'6' * 40}.abc.tmp", "meta.json", {}, 800)  # a killed export's temp folder
    for p in (stale / "meta.json", stale / "data.bin", stale):
        os.utime(p, (time.time() - 2 * DAY,) * 2)
    (root / ".evaluations.sqlite.x1.tmp").write_bytes(b"y" * 90)  # a writer at work now
    _folder(root / "optimum-venv", "pyvenv.cfg", {}, 5000)
    (root / "graphs").mkdir()  # a family's exported graph pieces (lts.families.exported), today's and older
    for key, recorded in (("a" * 40, versions("graph")), ("b" * 40, {"graph": VERSIONS["graph"] - 1})):
        piece = helper.make_model(helper.make_graph([], "piece", [], []))
        helper.set_model_props(piece, {exported.VERSIONS_PROP: json.dumps(recorded)})
        (root / "graphs" / f"{key}.onnx").write_bytes(piece.SerializeToString())
    return {"current": {fp32.name + "/", int8.name + "/", "shards/today/", "shards/then/", f"graphs/{'a' * 40}.onnx"},
            "old": {"1" * 40 + "/", "2" * 40 + "/", f"{'4' * 40}-int8-{'5' * 40}/", "shards/old/",
                    f".{'6' * 40}.abc.tmp/", f"graphs/{'b' * 40}.onnx"},
            "unknown": {"3" * 40 + "/"}, "kept": {".evaluations.sqlite.x1.tmp", "optimum-venv/"}}


@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("template") / "cache"
    with pytest.MonkeyPatch.context() as m:
        m.setenv("LTS_CACHE_DIR", str(root))
        names = _build(root, tiny_model_dir, m)
    return root, names


@pytest.fixture
def cache(template):
    """Today's cache, a copy of the template, at $LTS_CACHE_DIR; yields (root, names by standing)."""
    root = Path(os.environ["LTS_CACHE_DIR"])
    shutil.copytree(template[0], root)
    with closing(sqlite3.connect(root / "evaluations.sqlite")) as conn:  # the WAL copied too, folded in
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root, template[1]


def _listing(root: Path) -> set[str]:
    """Each entry's name as `lts cache` gives it (onnx/ folders by their own name)."""
    out = {p.name + "/" for p in (root / "onnx").iterdir()} if (root / "onnx").is_dir() else set()
    out |= {f"shards/{p.name}/" for p in (root / "shards").iterdir()}
    out |= {f"graphs/{p.name}" for p in (root / "graphs").iterdir()}
    return out | {p.name + ("/" if p.is_dir() else "") for p in root.iterdir()
                  if p.name not in ("onnx", "shards", "graphs") and not p.name.startswith("evaluations.sqlite")}


def _snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*") if p.is_file()
            and not p.name.startswith("evaluations.sqlite")}


def _cache(*args: str):
    proc = run_cli(["-m", "lts", "cache", *args], cwd=Path(os.environ["LTS_CACHE_DIR"]).parent)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout


def test_info_reports_each_kind_its_entries_and_bytes(cache):
    root, names = cache
    info = json.loads(_cache("info", "--json"))
    assert Path(info["root"]) == root and info["origin"] == "$LTS_CACHE_DIR"
    kinds = info["kinds"]
    rows = _rows(root / "evaluations.sqlite")
    results = [(k, v) for k, v in rows.items() if k[0] == "results"]
    timings = [(k, v) for k, v in rows.items() if k[0] == "timings"]
    assert (kinds["evaluations"]["entries"], kinds["evaluations"]["bytes"]) == (len(results), _bytes(results)) == \
        (len(results), sum(s["bytes"] for s in kinds["evaluations"]["standing"].values()))
    assert {s: v["entries"] for s, v in kinds["evaluations"]["standing"].items()} == \
        {"current": 2, "old": 2, "newer": 1, "unknown": 1}
    assert (kinds["shape timings"]["entries"], kinds["shape timings"]["bytes"]) == (2, _bytes(timings))
    onnx = root / "onnx"
    exports = [p for p in onnx.iterdir() if not p.name.startswith(".") and "-int8-" not in p.name]
    assert kinds["ONNX exports"]["entries"] == 4 and kinds["ONNX exports"]["bytes"] == sum(map(_size, exports))
    assert kinds["ONNX exports"]["standing"]["old"]["bytes"] == _size(onnx / ("1" * 40)) + _size(onnx / ("2" * 40))
    assert kinds["ONNX exports"]["standing"]["unknown"]["bytes"] == _size(onnx / ("3" * 40))
    int8 = [p for p in onnx.iterdir() if "-int8-" in p.name]
    assert kinds["INT8 copies"]["bytes"] == sum(map(_size, int8)) and kinds["INT8 copies"]["entries"] == 2
    assert kinds["token shards"]["bytes"] == _size(root / "shards") and kinds["token shards"]["entries"] == 3
    assert kinds["exported graphs"]["bytes"] == _size(root / "graphs") and kinds["exported graphs"]["entries"] == 2
    assert {s: v["entries"] for s, v in kinds["exported graphs"]["standing"].items()} == {"current": 1, "old": 1}
    assert kinds["temp leftovers"]["standing"] == {"old": {"entries": 1, "bytes": _size(onnx / f".{'6' * 40}.abc.tmp")},
                                                   "writing": {"entries": 1, "bytes": 90}}
    assert info["other"] == {"optimum-venv/": _size(root / "optimum-venv")}
    store_files = [p for p in root.iterdir() if p.name.startswith("evaluations.sqlite")]
    assert info["bytes"] == _size(root) == sum(p.stat().st_size for p in store_files) + sum(
        k["bytes"] for name, k in kinds.items() if name not in ("evaluations", "shape timings"))
    text = _cache()  # the default action: the same figures for people
    assert text.startswith(f"LTS cache: {root} (from $LTS_CACHE_DIR), ")
    assert "with --include-unrecorded also" in text.splitlines()[-1]


def _evaluations(root: Path) -> dict[str, set[str]]:
    """The archids of the stored results, by the versions recorded beside them."""
    with closing(sqlite3.connect(root / "evaluations.sqlite")) as conn:
        rows = conn.execute("SELECT r.archid, v.versions FROM results r LEFT JOIN results_versions v "
                            "USING (archid, settings, hardware)").fetchall()
    out: dict[str, set[str]] = {}
    for archid, recorded in rows:
        out.setdefault(cachekeys.standing(json.loads(recorded)) if recorded else "unknown", set()).add(archid)
    return out


def test_the_dry_run_lists_what_would_go_and_removes_nothing(cache):
    root, names = cache
    before, rows = _snapshot(root), _rows(root / "evaluations.sqlite")
    out = _cache("prune")
    assert _snapshot(root) == before and _rows(root / "evaluations.sqlite") == rows
    listed = out.split("(a dry run: nothing was removed; --yes removes them):\n")[1].split("\nkept: ")[0]
    for name in names["old"]:
        assert name in listed, (name, out)
    for name in names["current"] | names["unknown"] | names["kept"]:
        assert name not in listed, (name, out)


def _path(root: Path, name: str) -> Path:
    return root / name if (root / name).exists() else root / "onnx" / name


def test_prune_removes_exactly_the_unreachable_and_every_reachable_entry_still_serves(cache, tiny_model_dir):
    root, names = cache
    rows, before = _rows(root / "evaluations.sqlite"), _listing(root)
    folders = sum(_size(_path(root, name.rstrip("/"))) for name in names["old"])
    out = _cache("prune", "--yes")
    assert _listing(root) == before - names["old"], out
    assert set(_evaluations(root)) == {"current", "newer", "unknown"}
    assert {k for k in _rows(root / "evaluations.sqlite") if k[0] == "timings"} == {("timings", ("block:today",))}
    removed = set(rows.items()) - set(_rows(root / "evaluations.sqlite").items())
    assert len(removed) == 3  # the evaluation bumped, the int8 one, a timing of an older graph
    n, size = len(names["old"]) + len(removed), folders + _bytes(removed)
    assert out.startswith(f"removed {n} entries, ") and f"({size:,} bytes):" in out.splitlines()[0], out
    for settings in (FP32, INT8):
        assert _evaluator(settings).evaluate(A).cached, "a reachable evaluation is served after the prune"
    from transformers import AutoModelForCausalLM

    from lts.generate.onnx_kv import cached_kv_onnx

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not cached_kv_onnx(model)[1] and not cached_kv_onnx(model, precision="int8")[1], "exported again"
    assert _cache("prune", "--yes").startswith("nothing to remove.")


def test_include_unrecorded_removes_the_entries_of_unknown_age_too(cache):
    root, names = cache
    before = _listing(root)
    out = _cache("prune", "--yes", "--include-unrecorded")
    assert _listing(root) == before - names["old"] - names["unknown"], out
    assert set(_evaluations(root)) == {"current", "newer"}


def test_a_bump_of_int8_makes_only_what_int8_keys_use_unreachable(cache, monkeypatch, capsys):
    """The versions recorded are those the key used: int8 evaluations and INT8 copies record "int8", fp32 ones not."""
    from lts import cache as command

    root, names = cache
    before = _listing(root)
    with monkeypatch.context() as m:
        m.setitem(VERSIONS, "int8", VERSIONS["int8"] + 1)
        assert command.main(["prune", "--yes"]) == 0
    int8 = {name for name in names["current"] if "-int8-" in name}
    assert len(int8) == 1 and _listing(root) == before - names["old"] - int8, capsys.readouterr().out
    assert _evaluator(FP32).evaluate(A).cached and _evaluator(INT8).cached(A) is None


def test_a_store_from_before_versions_were_recorded_keeps_its_rows_and_its_writers(tmp_path):
    """Opening it adds the side tables; its rows are of unknown age; an LTS from before still writes to it."""
    db = tmp_path / "evaluations.sqlite"
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript("CREATE TABLE results (archid TEXT, settings TEXT, hardware TEXT, result TEXT, created REAL,"
                           " PRIMARY KEY (archid, settings, hardware));"
                           "CREATE TABLE timings (key TEXT PRIMARY KEY, timing TEXT, created REAL);"
                           "INSERT INTO results VALUES ('a', 's', 'h', 'old', 0);")
    store = SQLiteStore(db)
    store.put("results", ("b", "s", "h"), "new", versions=versions("evaluation"))
    with sqlite3.connect(db) as conn:  # as the store before this one writes
        conn.execute("INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?)", ("c", "s", "h", "older writer", 1))
    held = {(h.table, h.recorded): h.entries for h in store.held()}
    assert held == {("results", None): 2, ("results", cachekeys.canonical(versions("evaluation"))): 1}
    assert store.get("results", ("a", "s", "h")) == "old" and store.get("results", ("c", "s", "h")) == "older writer"


@pytest.mark.parametrize("args, says", [(["prune", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
                                        (["tidy"], "invalid choice: 'tidy'"), (["--yes"], "unrecognized arguments")])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, says):
    proc = run_cli(["-m", "lts", "cache", *args], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr
    assert not any(tmp_path.iterdir())
