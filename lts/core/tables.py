"""CSV cells and tables: one formatter for every CSV LTS writes (search records and model comparisons)."""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Any, Iterable, Mapping, Sequence

from lts.core.fileio import write_text


def fmt_cell(value: Any) -> str:
    """A CSV cell: '' for None/NaN, floats to 6 significant digits (huge ones exactly), the rest as str()."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    return str(value)


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text of `rows`; columns default to every key in first-seen order."""
    rows = list(rows)
    if columns is None:
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        columns = list(keys)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([fmt_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Write `rows` as CSV, atomically."""
    write_text(path, csv_text(rows, columns))
