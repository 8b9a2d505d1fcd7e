#!/usr/bin/env python
"""Train one searched architecture for real: ``python train.py models/<archid>``, the same as ``lts train``.

The flags and the main live in lts/train/cli.py; see ``python train.py -h``.
"""

import sys

from lts.core.cli import run_cli
from lts.train.cli import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
