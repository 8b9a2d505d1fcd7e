"""The one entry point that scores an architecture, with a persistent SQLite cache.

``Evaluator.evaluate(config)`` returns an ``EvalResult`` with every objective:

- ``non_embedding_params`` (quality proxy, analytic, exact);
- ``onnx_latency_s`` / ``onnx_latency_cv``: one forward at ``seq_len`` returning next-token
  logits, measured with ONNX Runtime in a child process. With ``latency_mode="composed"``
  (default) it is ``base + n_layer * block``: the embeddings+LM-head graph and a one-block
  graph are timed separately and cached by shape, so a candidate costs at most one block
  timing however deep it is (``benchmarks/evaluators.py`` checks this against the real
  transformers export). ``latency_mode="full"`` times the whole graph;
- ``onnx_memory_mb``: measured peak RSS of session creation + that forward, over the idle
  process (see ``lts.measure``); ``onnx_file_mb``: size of the self-contained .onnx file.

Results are stored the moment they exist, keyed by (archid, evaluator settings, hardware
fingerprint): a killed search loses nothing, and a cached result comes back in ~1 ms.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sqlite3
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from lts.errors import LTSError
from lts.measure import MeasureError, MeasureSettings, Timing, measure
from lts.proxy import non_embedding_params, total_params
from lts.space import ArchConfig

MIB = 2**20

# name -> (unit, +1 minimise / -1 maximise). The sign is applied in exactly one place: search.objective_matrix.
OBJECTIVES: dict[str, tuple[str, int]] = {
    "non_embedding_params": ("parameters", -1),
    "onnx_latency_s": ("s", +1),
    "onnx_memory_mb": ("MiB", +1),
    "onnx_file_mb": ("MiB", +1),
}
MEASURED = {"onnx_latency_s", "onnx_memory_mb"}
DEFAULT_OBJECTIVES = ("non_embedding_params", "onnx_latency_s", "onnx_memory_mb")
LATENCY_MODES = ("composed", "full")
SCHEMA_VERSION = 1  # bump when what a cached value means changes


def parse_objectives(text: str | Iterable[str]) -> tuple[str, ...]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise LTSError(f"unknown objective(s): {', '.join(unknown)} (choose from {', '.join(OBJECTIVES)})")
    if len(names) < 2:
        raise LTSError("a search needs at least two objectives (comma-separated)")
    if len(set(names)) != len(names):
        raise LTSError(f"duplicate objective in {','.join(names)}")
    return tuple(names)


@lru_cache(maxsize=1)
def hardware_fingerprint() -> dict[str, Any]:
    """What makes a latency/memory figure machine-specific (short id under "id")."""
    import onnxruntime

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "machine": platform.machine(), "cores": os.cpu_count(), "system": platform.system(),
            "onnxruntime": onnxruntime.__version__}
    info["id"] = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:10]
    return info


def default_cache_path() -> Path:
    root = os.environ.get("LTS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lts")
    return Path(root) / "evaluations.sqlite"


@dataclass(frozen=True)
class EvalSettings:
    """Everything that changes an evaluation's values (hashed into the cache key)."""

    measurement: MeasureSettings = field(default_factory=MeasureSettings)
    measure: bool = True  # False: proxy + file size only (deterministic, no child process)
    latency_mode: str = "composed"

    def __post_init__(self) -> None:
        if self.latency_mode not in LATENCY_MODES:
            raise LTSError(f"latency_mode must be one of {LATENCY_MODES}, got {self.latency_mode!r}")

    @classmethod
    def create(cls, measure: bool = True, latency_mode: str = "composed", **measurement: Any) -> "EvalSettings":
        """Flat keywords (seq_len=, threads=, timeout_s=, ...) for the MeasureSettings inside."""
        return cls(MeasureSettings(**{k: v for k, v in measurement.items() if v is not None}), measure, latency_mode)

    @property
    def seq_len(self) -> int:
        return self.measurement.seq_len

    @property
    def threads(self) -> int:
        return self.measurement.threads

    def key(self) -> str:
        d = {"measurement": self.measurement.key(), "measure": self.measure, "latency_mode": self.latency_mode,
             "schema": SCHEMA_VERSION}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class EvalResult:
    """One architecture's objectives and how they were obtained (an immutable record)."""

    archid: str
    config: ArchConfig
    non_embedding_params: int
    total_params: int
    onnx_latency_s: float = math.nan
    onnx_latency_cv: float = math.nan
    onnx_memory_mb: float = math.nan
    onnx_memory_sampled_mb: float = math.nan
    onnx_file_mb: float = math.nan
    eval_seconds: float = 0.0
    status: str = "ok"
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def objectives(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("non_embedding_params", "onnx_latency_s", "onnx_latency_cv",
                                              "onnx_memory_mb", "onnx_file_mb", "eval_seconds", "status")}

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"archid": self.archid, **self.config.to_dict(), "total_params": self.total_params}
        row.update(self.objectives())
        row["onnx_memory_sampled_mb"] = self.onnx_memory_sampled_mb
        row["cached"] = self.cached
        return row

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("config", "cached")}
        d["config"] = self.config.to_dict()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], cached: bool = False) -> "EvalResult":
        d = dict(d)
        d["config"] = ArchConfig(**d["config"])
        return cls(**d, cached=cached)


class Cache:
    """SQLite store of results and of per-shape timings; safe for concurrent processes (WAL)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self._local = threading.local()
        if self.path:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn().executescript(
                    "PRAGMA journal_mode=WAL;"
                    "CREATE TABLE IF NOT EXISTS results (archid TEXT, settings TEXT, hardware TEXT, result TEXT,"
                    " created REAL, PRIMARY KEY (archid, settings, hardware));"
                    "CREATE TABLE IF NOT EXISTS timings (key TEXT PRIMARY KEY, timing TEXT, created REAL);"
                )
            except (sqlite3.Error, OSError) as exc:
                raise LTSError(f"cannot use cache {self.path}: {exc}") from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._local.conn = conn
        return conn

    def get(self, table: str, key: tuple[str, ...]) -> str | None:
        if not self.path:
            return None
        if table == "results":
            row = self._conn().execute("SELECT result FROM results WHERE archid=? AND settings=? AND hardware=?",
                                       key).fetchone()
        else:
            row = self._conn().execute("SELECT timing FROM timings WHERE key=?", key).fetchone()
        return row[0] if row else None

    def put(self, table: str, key: tuple[str, ...], value: str) -> None:
        if not self.path:
            return
        if table == "results":
            self._conn().execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)", (*key, value, time.time()))
        else:
            self._conn().execute("INSERT OR REPLACE INTO timings VALUES (?, ?, ?)", (*key, value, time.time()))

    def __getstate__(self) -> dict[str, Any]:  # connections stay behind (e.g. when sent to a Ray worker)
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


class Evaluator:
    """Scores architectures: cache first, then proxy + (optionally) a measurement child."""

    def __init__(self, settings: EvalSettings | None = None, cache_path: str | os.PathLike | None = None) -> None:
        self.settings = settings or EvalSettings()
        self.cache = Cache(cache_path)
        self.hardware = hardware_fingerprint()
        # One lock per machine (not per cache): any two LTS processes here never time at once.
        self.lock_path = str(Path(tempfile.gettempdir()) / "lts-measure.lock")

    def _result_key(self, archid: str) -> tuple[str, str, str]:
        return (archid, self.settings.key(), self.hardware["id"])

    def _timing_key(self, config: ArchConfig, part: str) -> str:
        c = config
        shape = {"base": (c.n_embd, c.vocab_size), "block": (c.n_embd, c.n_inner, c.n_head)}[part]
        return f"{part}:{shape}:{self.settings.key()}:{self.hardware['id']}"

    def cached(self, config: ArchConfig) -> EvalResult | None:
        raw = self.cache.get("results", self._result_key(config.archid))
        return EvalResult.from_json(json.loads(raw), cached=True) if raw else None

    def evaluate(self, config: ArchConfig) -> EvalResult:
        """Return the cached result, or compute, store and return it. Never raises for a failed measurement."""
        hit = self.cached(config)
        if hit is not None:
            return hit
        result = self.compute(config)
        self.store(result)
        return result

    def store(self, result: EvalResult) -> None:
        self.cache.put("results", self._result_key(result.archid), json.dumps(result.to_json()))

    def compute(self, config: ArchConfig) -> EvalResult:
        """Evaluate without looking at the results cache (shape timings are still reused)."""
        from lts.onnx_graph import gpt2_graph_spec, write_onnx

        t0 = time.perf_counter()
        base = dict(archid=config.archid, config=config, non_embedding_params=non_embedding_params(config),
                    total_params=total_params(config))
        if not self.settings.measure:
            file_mb = write_onnx(gpt2_graph_spec(config), None) / MIB
            return EvalResult(**base, onnx_file_mb=file_mb, eval_seconds=time.perf_counter() - t0)

        if self.settings.latency_mode == "full":
            parts: dict[str, Timing | None] = {"full": None}
        else:
            parts = {p: self._cached_timing(config, p) for p in ("base", "block")}
        todo = tuple(p for p, t in parts.items() if t is None)
        try:
            raw = measure(config, self.settings.measurement, parts=todo, memory=True, lock_path=self.lock_path)
        except MeasureError as exc:
            return EvalResult(**base, eval_seconds=time.perf_counter() - t0, status=f"failed: {exc}")
        for p, timing in raw["timings"].items():
            parts[p] = timing
            if p != "full":
                self.cache.put("timings", (self._timing_key(config, p),), json.dumps(asdict(timing)))
        latency, cv = compose_latency(config.n_layer, parts)
        return EvalResult(
            **base,
            onnx_latency_s=latency,
            onnx_latency_cv=cv,
            onnx_memory_mb=raw["memory_bytes"] / MIB,
            onnx_memory_sampled_mb=raw["memory_sampled_bytes"] / MIB,
            onnx_file_mb=raw["file_bytes"] / MIB,
            eval_seconds=time.perf_counter() - t0,
        )

    def _cached_timing(self, config: ArchConfig, part: str) -> Timing | None:
        raw = self.cache.get("timings", (self._timing_key(config, part),))
        return Timing(**json.loads(raw)) if raw else None

    def conditions(self) -> dict[str, Any]:
        s = self.settings
        return {"seq_len": s.seq_len, "threads": s.threads, "batch": 1, "latency_mode": s.latency_mode,
                "hardware": self.hardware}


def compose_latency(n_layer: int, parts: dict[str, Timing | None]) -> tuple[float, float]:
    """(median seconds, coefficient of variation) of the whole forward from its timed parts."""
    if "full" in parts:
        t = parts["full"]
        assert t is not None
        return t.median_s, t.cv
    b, k = parts["base"], parts["block"]
    assert b is not None and k is not None
    latency = b.median_s + n_layer * k.median_s
    std = math.sqrt(b.std_s**2 + (n_layer * k.std_s) ** 2)  # one block timing scales with depth
    return latency, std / latency if latency > 0 else math.nan

