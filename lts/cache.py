"""`lts cache`: where LTS's cache is, what it holds by kind, and `lts cache prune`, which removes what no key made now
can reach.

Everything lives under one root (:func:`lts.core.fileio.cache_root`). What this command tells apart there:

    evaluations, shape timings   the rows of evaluations.sqlite (lts.cost.store)
    ONNX exports, INT8 copies    onnx/<key>/ and onnx/<key>-int8-<key>/ (lts.generate.onnx_kv)
    token shards                 a folder holding tokens.json (lts.train.shards), wherever under the root
    exported graphs              graphs/<key>.onnx: a family's graph pieces (lts.families.exported)
    temp leftovers               what the atomic writers name their temp entries (lts.core.fileio.is_scratch)
    other                        everything else (the benchmarks' peer venvs, ...): reported, never removed

A key is a digest and cannot say which versions made it, so every writer records, beside the entry, the
:data:`lts.core.cachekeys.VERSIONS` its key was made with; an entry stands (:func:`lts.core.cachekeys.standing`)
"current" (a key made now reaches it), "old" (one of its versions is below today's: nothing made now or later
reaches it), "newer" (written by a newer LTS, whose keys may reach it) or "unknown" (written before versions were
recorded: which ones made it cannot be told). Prune removes the old ones, the unknown ones only when asked, and
temp entries untouched for a day; a temp entry younger than that may be a writer's work in progress.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from lts.core import fileio
from lts.core.cachekeys import VERSIONS, standing, versions
from lts.core.cli import ArgumentParser
from lts.cost.store import SQLiteStore, default_cache_path
from lts.families import exported
from lts.generate import onnx_kv
from lts.train import shards

KINDS = ("evaluations", "shape timings", "ONNX exports", "INT8 copies", "token shards", "exported graphs",
         "temp leftovers", "other")
TABLE_KINDS = {"results": "evaluations", "timings": "shape timings"}
STANDINGS = {"current": "reachable", "old": "unreachable", "unknown": "unknown age", "newer": "newer LTS"}
SCRATCH_AGE_S = 86400.0  # a temp entry untouched this long is no writer's work in progress


@dataclass(frozen=True)
class Entry:
    """One thing the cache holds: a folder or file (``path``), or the rows of one ``table`` whose versions were
    recorded alike (``group``: their canonical JSON, None when not recorded). ``recorded``: the versions, None when
    none were; ``standing``: see the module's docstring, "writing" for a temp entry touched in the last day,
    "other" for what is not LTS's to tell."""

    kind: str
    name: str
    entries: int
    bytes: int
    standing: str
    recorded: Mapping[str, int] | None = None
    path: Path | None = None
    table: str | None = None
    group: str | None = None
    age_s: float | None = None  # of a temp entry: since anything in it last changed

    def why(self) -> str:
        """Why it stands as it does, in words."""
        if self.standing == "unknown":
            return "versions not recorded" if not self.recorded else \
                "only " + ", ".join(f"{n} {v}" for n, v in self.recorded.items()) + " recorded"
        if self.standing in ("old", "newer") and self.recorded:
            return ", ".join(f"{n} {v}" + (f" (now {VERSIONS[n]})" if VERSIONS.get(n) != v else "")
                             for n, v in self.recorded.items())
        if self.age_s is not None:
            return f"untouched for {self.age_s / 86400:.1f} days"
        return ""


def folder_bytes(path: Path) -> int:
    """Bytes of the files under `path` (or of the file `path`), links not followed."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for parent, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(parent, f)).st_size
            except FileNotFoundError:  # a writer's temp file gone meanwhile
                pass
    return total


def _age(path: Path) -> float:
    """Seconds since anything under `path` was last modified."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for parent, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
                except FileNotFoundError:
                    pass
    return time.time() - newest


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _recorded(meta: Mapping[str, Any], legacy: Mapping[str, int]) -> dict[str, int] | None:
    """The versions a meta file records; `legacy`, the ones its older fields name, for files written before."""
    rec = meta.get("versions")
    if isinstance(rec, dict) and all(isinstance(v, int) for v in rec.values()):
        return dict(rec)
    return dict(legacy) or None


def _stands(recorded: Mapping[str, int] | None, names: Mapping[str, int]) -> str:
    return standing(recorded, names) if recorded else "unknown"


def scratch_entry(path: Path, root: Path) -> Entry:
    age = _age(path)
    stands = "old" if age > SCRATCH_AGE_S else "writing"
    return Entry("temp leftovers", _name(path, root), 1, folder_bytes(path), stands, path=path, age_s=age)


def onnx_entry(path: Path, root: Path) -> Entry:
    """An onnx/ folder: an export or an INT8 copy, by its meta.json (which records its versions, or, written
    before it did, the export's version as its "format")."""
    meta = _read_json(path / onnx_kv.META_FILE) or {}
    int8 = meta.get("precision") == "int8"
    fmt = meta.get("format")
    recorded = _recorded(meta, {"onnx_export": fmt} if isinstance(fmt, int) else {})
    names = {**versions("onnx_export"), **(versions("int8") if int8 else {})}
    return Entry("INT8 copies" if int8 else "ONNX exports", _name(path, root), 1, folder_bytes(path),
                 _stands(recorded, names), recorded, path)


def graph_entry(path: Path, root: Path) -> Entry:
    """A family's exported graph piece (graphs/<key>.onnx, lts.families.exported): it records its versions."""
    recorded = exported.recorded_versions(path)
    return Entry("exported graphs", _name(path, root), 1, folder_bytes(path), _stands(recorded, versions("graph")),
                 recorded, path)


def shard_entry(path: Path, root: Path) -> Entry:
    """A token shard folder: tokens.json records its versions, or names the format ("lts-token-shards/N", N
    the token_shards version) in those written before it did."""
    meta = _read_json(path / shards.META_FILE) or {}
    prefix, _, number = str(meta.get("format", "")).partition("/")
    legacy = {"token_shards": int(number)} if prefix == "lts-token-shards" and number.isdigit() else {}
    recorded = _recorded(meta, legacy)
    return Entry("token shards", _name(path, root), 1, folder_bytes(path),
                 _stands(recorded, versions("token_shards")), recorded, path)


def _name(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) + ("/" if path.is_dir() and not path.is_symlink() else "")


def store_entries(store: SQLiteStore) -> list[Entry]:
    """The store's rows, grouped by table and recorded versions."""
    out = []
    for held in store.held():
        recorded = json.loads(held.recorded) if held.recorded is not None else None
        out.append(Entry(TABLE_KINDS[held.table], _rows(store, held.entries), held.entries, held.bytes,
                         _stands(recorded, versions("evaluation")), recorded, table=held.table, group=held.recorded))
    return out


def _plain_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _rows(store: SQLiteStore, n: int) -> str:
    return f"{store.path.name if store.path else 'store'}: {n} row{'s' * (n != 1)}"


def _walk(path: Path, root: Path, top: str, other: dict[str, int], out: list[Entry]) -> None:
    """`path` under `root`: a temp entry, a shard folder, or a folder whose items are walked in turn (a venv
    aside); the bytes of what is none of these go to ``other[top]``."""
    if fileio.is_scratch(path):
        out.append(scratch_entry(path, root))
    elif _plain_dir(path) and (path / shards.META_FILE).is_file():
        out.append(shard_entry(path, root))
    elif _plain_dir(path) and not (path / "pyvenv.cfg").exists():
        for item in sorted(path.iterdir()):
            try:
                _walk(item, root, top, other, out)
            except FileNotFoundError:  # a writer renamed its temp entry meanwhile
                pass
    else:
        other[top] = other.get(top, 0) + folder_bytes(path)


def _onnx_entries(folder: Path, root: Path, other: dict[str, int], out: list[Entry]) -> None:
    for item in sorted(folder.iterdir()):
        try:
            if fileio.is_scratch(item):
                out.append(scratch_entry(item, root))
            elif _plain_dir(item):
                out.append(onnx_entry(item, root))
            else:
                other[_name(item, root)] = folder_bytes(item)
        except FileNotFoundError:
            pass


def _graph_entries(folder: Path, root: Path, other: dict[str, int], out: list[Entry]) -> None:
    for item in sorted(folder.iterdir()):
        try:
            if fileio.is_scratch(item):
                out.append(scratch_entry(item, root))
            elif item.suffix == ".onnx" and item.is_file():
                out.append(graph_entry(item, root))
            else:
                other[_name(item, root)] = folder_bytes(item)
        except FileNotFoundError:
            pass


def survey() -> tuple[list[Entry], int]:
    """Every entry under :func:`lts.core.fileio.cache_root`, and the bytes evaluations.sqlite takes on disk."""
    root = fileio.cache_root()
    store_path = default_cache_path()
    store_files = [store_path.with_name(store_path.name + s) for s in ("", "-wal", "-shm", "-journal")]
    store_bytes = sum(f.stat().st_size for f in store_files if f.is_file())  # before this process opens it
    entries = store_entries(SQLiteStore(store_path)) if store_path.is_file() else []
    other: dict[str, int] = {}
    for path in sorted(root.iterdir()) if root.is_dir() else ():
        if path in store_files:
            continue
        if path == onnx_kv.default_cache_dir() and _plain_dir(path):
            _onnx_entries(path, root, other, entries)
        elif path == exported.cache_folder() and _plain_dir(path):
            _graph_entries(path, root, other, entries)
        else:
            try:
                _walk(path, root, _name(path, root), other, entries)
            except FileNotFoundError:
                pass
    entries += [Entry("other", name, 1, size, "other", path=root / name) for name, size in other.items()]
    return entries, store_bytes


def chosen(entries: list[Entry], include_unrecorded: bool) -> list[Entry]:
    """What prune removes: the old entries (temp entries untouched for a day among them), and the unknown ones
    when `include_unrecorded`."""
    take = {"old", "unknown"} if include_unrecorded else {"old"}
    return [e for e in entries if e.standing in take and e.kind != "other"]


def remove(entries: list[Entry]) -> tuple[list[Entry], bool]:
    """Remove `entries` (:func:`chosen`): the store's rows in one transaction, each folder renamed aside then
    deleted, a folder only when it still stands as it did (a writer may have put a new one at that path).
    Returns what was removed (the rows as counted when deleted) and whether the store gave its space back."""
    done: list[Entry] = []
    groups = [e for e in entries if e.table is not None]
    compacted = True
    if groups:
        store = SQLiteStore(default_cache_path())
        stood = {(e.table, e.group): e for e in groups}
        for held in store.remove([(e.table, e.group) for e in groups]):
            e = stood[(held.table, held.recorded)]
            done.append(Entry(e.kind, _rows(store, held.entries), held.entries, held.bytes, e.standing, e.recorded,
                              table=e.table, group=e.group))
        compacted = store.compact()
    root = fileio.cache_root()
    again = {"temp leftovers": scratch_entry, "token shards": shard_entry, "exported graphs": graph_entry}
    for e in entries:
        if e.path is None or not e.path.exists():
            continue
        now = again.get(e.kind, onnx_entry)(e.path, root)
        if now.standing == e.standing:
            fileio.discard(e.path)
            done.append(now)
    return done, compacted


def human(n: float) -> str:
    """Bytes for people: 1023 B, 1.5 KiB, 12.0 MiB, ..."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def totals(entries: list[Entry]) -> dict[str, dict[str, Any]]:
    """Per kind (:data:`KINDS`): entries and bytes, in all and per standing."""
    out: dict[str, dict[str, Any]] = {k: {"entries": 0, "bytes": 0, "standing": {}} for k in KINDS}
    for e in entries:
        t = out[e.kind]
        t["entries"] += e.entries
        t["bytes"] += e.bytes
        s = t["standing"].setdefault(e.standing, {"entries": 0, "bytes": 0})
        s["entries"] += e.entries
        s["bytes"] += e.bytes
    return out


def _sum(entries: list[Entry]) -> tuple[int, int]:
    return sum(e.entries for e in entries), sum(e.bytes for e in entries)


def report(entries: list[Entry], store_bytes: int) -> dict[str, Any]:
    """What `lts cache info --json` prints."""
    root, origin = fileio.cache_root_origin()
    on_disk = store_bytes + sum(e.bytes for e in entries if e.table is None)
    old, unknown = chosen(entries, False), [e for e in entries if e.standing == "unknown"]
    return {"root": str(root), "origin": origin, "bytes": on_disk, "store_file_bytes": store_bytes,
            "kinds": totals(entries), "other": {e.name: e.bytes for e in entries if e.kind == "other"},
            "prunable": dict(zip(("entries", "bytes"), _sum(old))),
            "unrecorded": dict(zip(("entries", "bytes"), _sum(unknown)))}


def print_info(info: dict[str, Any]) -> None:
    print(f"LTS cache: {info['root']} (from {info['origin']}), {human(info['bytes'])} on disk")
    heads = ("entries", "size", *STANDINGS.values())
    print(f"{'kind':<15}" + "".join(f"{h:>12}" for h in heads))
    for kind, t in info["kinds"].items():
        cells = [str(t["entries"]) if t["entries"] else "-", human(t["bytes"]) if t["entries"] else "-"]
        if kind not in ("temp leftovers", "other"):
            cells += [human(t["standing"][s]["bytes"]) if s in t["standing"] else "-" for s in STANDINGS]
        elif kind == "temp leftovers":
            cells += ["-", human(t["standing"]["old"]["bytes"]) if "old" in t["standing"] else "-"]
        print(f"{kind:<15}" + "".join(f"{c:>12}" for c in cells))
    if info["store_file_bytes"]:
        print(f"evaluations and shape timings: the bytes of their rows (keys and values); evaluations.sqlite takes "
              f"{human(info['store_file_bytes'])} on disk.")
    writing = info["kinds"]["temp leftovers"]["standing"].get("writing")
    if writing:
        print(f"temp leftovers: {writing['entries']} touched in the last day ({human(writing['bytes'])}), which a "
              "writer may be at, are kept.")
    if info["other"]:
        print("other, never pruned: " + ", ".join(f"{n} {human(b)}" for n, b in info["other"].items()))
    p, u = info["prunable"], info["unrecorded"]
    line = f"lts cache prune would remove {p['entries']} entries, {human(p['bytes'])}"
    if u["entries"]:
        line += f"; with --include-unrecorded also {u['entries']} of unknown age, {human(u['bytes'])}"
    print(line + ".")


def _line(e: Entry) -> str:
    why = e.why()
    return f"  {e.kind:<15} {human(e.bytes):>10}  {e.name}" + (f"  ({why})" if why else "")


def prune(yes: bool, include_unrecorded: bool) -> None:
    """Print what prune removes (removing it when `yes`), then what it keeps."""
    entries, _ = survey()
    going = chosen(entries, include_unrecorded)
    n, size = _sum(going)
    if not going:
        print("nothing to remove.")
    elif not yes:
        print(f"would remove {n} entries, {human(size)} ({size:,} bytes) (a dry run: nothing was removed; --yes "
              "removes them):")
        print("\n".join(_line(e) for e in going))
    else:
        done, compacted = remove(going)
        n, size = _sum(done)
        print(f"removed {n} entries, {human(size)} ({size:,} bytes):")
        print("\n".join(_line(e) for e in done))
        if not compacted:
            print("evaluations.sqlite was busy: the space of its removed rows is reused by later entries.")
    kept = [e for e in entries if e not in going]
    parts = []
    for stands, words, note in (("current", "reachable", ""),
                                ("unknown", "of unknown age", "; --include-unrecorded removes them"),
                                ("newer", "written by a newer LTS", ""),
                                ("writing", "temp, a writer may be at them", ""),
                                ("other", "other", "; not LTS's to remove")):
        k, b = _sum([e for e in kept if e.standing == stands])
        if k:
            parts.append(f"{k} {words} ({human(b)}{note})")
    print("kept: " + ("; ".join(parts) if parts else "nothing") + ".")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog, description="Where LTS's cache is and what it holds (ACTION info, the "
                            "default), and prune, which removes what no key made now can reach. The cache is one "
                            "folder: $LTS_CACHE_DIR, else $XDG_CACHE_HOME/lts, else ~/.cache/lts.")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    info = sub.add_parser("info", help="the cache's folder, and its size by kind: reachable by a key made now, "
                          "or not", description="The cache's folder, and each kind's entries and size: reachable "
                          "by a key made now; unreachable (made with a version older than today's); of unknown "
                          "age (written before versions were recorded); written by a newer LTS.")
    info.add_argument("--json", action="store_true", help="print it as JSON (sizes in bytes)")
    pr = sub.add_parser("prune", help="remove what no key made now can reach (a dry run unless --yes)",
                        description="Remove the entries no key made now can reach: those whose recorded versions "
                        "are older than today's, and temp entries a killed writer left, untouched for a day. "
                        "Without --yes, a dry run: it lists them with their sizes and removes nothing. Entries a "
                        "key made now reaches, and those of a newer LTS, are never removed; a search running "
                        "meanwhile loses nothing.")
    pr.add_argument("--yes", action="store_true", help="remove them (default: list what would go, remove nothing)")
    pr.add_argument("--include-unrecorded", action="store_true",
                    help="also remove the entries of unknown age: written before LTS recorded versions (or by an "
                    "older LTS still running), they cannot be shown reachable or not; an entry removed that was "
                    "still reachable is computed again when next needed")
    return parser


def main(argv: list[str] | None = None, prog: str = "lts cache") -> int:
    """``lts cache [info] [--json]`` and ``lts cache prune [--yes] [--include-unrecorded]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["info", *argv]  # info is the default action, and takes its flags without being named
    args = build_parser(prog).parse_args(argv)
    if args.action == "prune":
        prune(args.yes, args.include_unrecorded)
        return 0
    entries, store_bytes = survey()
    info = report(entries, store_bytes)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_info(info)
    return 0
