#!/usr/bin/env python
"""Compare language models side by side: ``python benchmark.py MODEL...``, the same as ``lts compare``.

The flags and the main live in lts/compare/cli.py; see ``python benchmark.py -h``.
"""

import sys

from lts.compare.cli import main, parse_args
from lts.core.cli import run_cli

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
