"""A benchmark's result: one JSON file for ``benchmarks/results_pages.py`` (the schema is there), and its tables.

Every benchmark ends with one call, beside what it prints::

    from benchmarks._results import write_result
    write_result("generation", conditions={...}, rows=[{...}, ...], threads=2, path=args.json)

The machine (CPU model, cores, OS), the library versions (torch, onnxruntime, transformers, pymoo and
python), the date and the command line are filled in here, so no benchmark writes them by hand.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
LIBRARIES = ("torch", "onnxruntime", "transformers", "pymoo")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


# The instruction sets that change ONNX Runtime's kernels (int8 above all: VNNI sums u8 x s8 products without
# AVX2's int16 saturation), so that a figure says which kind of CPU it holds for.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")


def cpu_flags() -> list[str]:
    """Which of :data:`ISA_FLAGS` the CPU has (``/proc/cpuinfo``'s flags or Features; empty where unknown)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "system": platform.system(),
            "arch": platform.machine(), "isa": cpu_flags()}


def machine_text() -> str:
    """The machine in one phrase for a table's heading: processor, cores, OS."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the libraries that decide the figures (absent ones are left out)."""
    out = {"python": platform.python_version()}
    for name in (*LIBRARIES, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def command_line(argv: list[str] | None = None) -> str:
    """How this benchmark was run: ``python -m benchmarks.generation --sizes 6x512`` (a module run with ``-m``),
    else the script repo-relative."""
    argv = list(sys.argv if argv is None else argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name.startswith("benchmarks."):
        return shlex.join(["python", "-m", spec.name, *argv[1:]])
    script = Path(argv[0]).resolve() if argv else Path("?")
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = argv[0] if argv else "?"
    return shlex.join(["python", script_text, *argv[1:]])


def default_path(name: str) -> Path:
    return RESULTS_DIR / f"{name}.json"


def write_result(name: str, command: str | None = None, conditions: dict[str, Any] | None = None,
                 rows: list[dict[str, Any]] | None = None, *, table: dict[str, Any] | None = None,
                 summary: dict[str, Any] | None = None, threads: int | None = None, notes: str | None = None,
                 extra_versions: tuple[str, ...] = (), path: Path | str | None = None) -> Path:
    """Write benchmark `name`'s result (schema: benchmarks/results_pages.py) atomically; returns the path
    (`path`, default benchmarks/results/<name>.json)."""
    if rows is None and table is None:
        raise ValueError("write_result needs rows or a table")
    data: dict[str, Any] = {
        "benchmark": name,
        "command": command or command_line(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "threads": threads,
        "versions": versions(extra_versions),
        "conditions": conditions or {},
    }
    if rows is not None:
        data["rows"] = rows
    if table is not None:
        data["table"] = table
    if summary:
        data["summary"] = summary
    if notes:
        data["notes"] = notes
    out = Path(path) if path is not None else default_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, out)
    print(f"# wrote {out}", file=sys.stderr)
    return out


def print_table(header: list[str], rows: list[list]) -> None:
    """A Markdown table on stdout."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
