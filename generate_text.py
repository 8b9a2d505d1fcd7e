#!/usr/bin/env python
"""Generate text with a causal LM: ``python generate_text.py MODEL TOKENIZER PROMPT``, the same as ``lts generate``.

The flags and the main live in lts/generate/cli.py; see ``python generate_text.py -h``.
"""

import sys

from lts.core.cli import run_cli
from lts.generate.cli import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
