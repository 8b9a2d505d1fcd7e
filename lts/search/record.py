"""The run folder's record: every result of a search, appended the moment it exists.

``<run>/evaluations.jsonl`` holds one JSON line per evaluated candidate (successes and
failures, with their reasons, values and raw measurements), written with one ``write`` and an
``fsync`` each: a killed run's folder can be read as it stands, and ``--resume`` rebuilds
everything it had finished from this file alone, without the user-wide cache. A line cut short
by a kill is skipped on reading. ``<run>/calibration.json`` keeps the run's calibration (the
reference graph's latency its latencies are reported at), so a resumed run reports at the
same scale as the run it continues.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lts.core import fileio
from lts.core.errors import LTSError
from lts.cost.evaluator import EvalResult

RECORD = "evaluations.jsonl"
CALIBRATION = "calibration.json"


class RunRecord:
    """Append-only JSON lines of results in a run folder."""

    def __init__(self, run_dir: str | os.PathLike, name: str = RECORD) -> None:
        self.path = Path(run_dir) / name

    def append(self, result: EvalResult, generation: int) -> None:
        line = json.dumps({"generation": generation, "cached": result.cached, **result.to_json()}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, strict: bool = False) -> list[tuple[int | None, EvalResult]]:
        """Every recorded result in order, with its generation.

        A line that cannot be read is skipped. ``strict``: only the last line may be (a kill cuts
        it short); any other, or a line without its generation, raises LTSError naming it.
        """
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        out = []
        for n, line in enumerate(lines, 1):
            try:
                d = json.loads(line)
                generation = int(d["generation"]) if strict else d.get("generation")
                out.append((generation, EvalResult.from_json(d, cached=bool(d.get("cached")))))
            except (ValueError, KeyError, TypeError):
                if strict and n < len(lines):
                    raise LTSError(f"{self.path} is corrupt at line {n}: not a recorded evaluation") from None
        return out

    def load(self) -> dict[str, EvalResult]:
        """The last recorded result of each archid (lines cut short by a kill are skipped)."""
        return {result.archid: result for _, result in self.read()}


def save_calibration(run_dir: Path, calibration_s: float | None, conditions: dict[str, Any]) -> None:
    fileio.write_json(run_dir / CALIBRATION, {"calibration_s": calibration_s, "target": conditions.get("describe"),
                                              "hardware": conditions.get("hardware")})


def load_calibration(run_dir: Path) -> float | None:
    try:
        return json.loads((run_dir / CALIBRATION).read_text())["calibration_s"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
