#!/usr/bin/env python
"""Search GPT-2 architectures for the Pareto front: ``python search.py [flags]``, the same as ``lts search``.

The flags and the main live in lts/search/cli.py; see ``python search.py -h``.
"""

import sys

from lts.core.cli import run_cli
from lts.search.cli import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
