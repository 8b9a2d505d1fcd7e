"""What every peer's worker shares: it runs inside the peer's own venv (``python -m benchmarks._<peer>_worker``,
started by :func:`benchmarks._peer_venv.run_worker`), which has neither lts nor this project's other
dependencies, so this module and the workers import nothing but the standard library at import time.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from importlib import metadata


def dist_version(name: str) -> str | None:
    """The installed version of distribution `name` in this interpreter; None if it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def worker_main(measure: Callable[[], dict]) -> int:
    """A worker's end: run `measure` with fd 1 pointed at stderr (nothing, not even C++ code, can print on
    stdout), then print its result as one JSON line on the real stdout."""
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result = measure()
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def quiet_libraries() -> None:
    """Warnings off and library logs to stderr at WARNING (transformers' at ERROR): a worker's stdout is its JSON."""
    warnings.simplefilter("ignore")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
