"""The flags several benchmarks take, declared once: where the JSON result goes, and how many threads."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_THREADS = min(2, os.cpu_count() or 1)  # what a benchmark measures with unless told: a 2-core machine's


def add_json_flag(parser: argparse.ArgumentParser, name: str, note: str = "") -> None:
    """``--json PATH``: where the result goes (default benchmarks/results/<name>.json; `name` may be a pattern
    such as ``int8_quality-<n_layer>x<n_embd>`` where the benchmark names the file after what it measured;
    `note` follows it in the help)."""
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help=f"where the JSON result for benchmarks/results_pages.py goes "
                             f"(default benchmarks/results/{name}.json{note})")


def add_threads_flag(parser: argparse.ArgumentParser, what: str = "threads") -> None:
    """``--threads N``, default min(2, cores); `what` says which threads in the help."""
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=f"{what} (default min(2, cores))")
