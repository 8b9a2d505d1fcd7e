"""What a model comparison (``benchmark.py``) is asked to do, and the pure definitions of its figures.

Settings and prompts are validated here; ``diversity`` and ``median_spread`` define the
text and timing figures (see ``lts.compare.runner`` for every column's definition).
"""

from __future__ import annotations

import math
import statistics
import string
from dataclasses import dataclass
from typing import Any, Sequence

from lts.core.errors import LTSError
from lts.core.fileio import check_prompts

DEFAULT_PROMPTS = (
    "In the near future, robots and humans",
    "Artificial intelligence will change the world in",
    "Data centers are critical to modern infrastructure because",
)
DTYPES = ("float32", "float16", "bfloat16", "auto")
DEVICES = ("cpu", "cuda")
CSV_NAME = "results.csv"

COLUMNS = (
    "Model", "Prompt", "Status", "Generated Text", "Diversity Score", "Distinct-2",
    "Loading Time (s)", "Generation Time (s)", "Time to First Token (s)", "Tokens/s", "New Tokens",
    "Parameters", "Dtype", "Memory Usage (MB)", "Peak Memory (MB)", "Model Memory (MB)",
    "Loading Time Spread (s)", "Generation Time Spread (s)", "GPU Peak Memory (MB)",
    "Repeats", "Max New Tokens", "Seed", "Threads", "Device",
)



@dataclass(frozen=True)
class BenchSettings:
    """Everything a benchmark run depends on (preset < flags; see configs/benchmark.yaml)."""

    models: tuple[str, ...] = ()          # hub ids or local model folders
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    prompts_file: str | None = None       # replaces `prompts`: one prompt a line, or a JSON list
    out: str = "."                        # folder for results.csv and the charts
    max_new_tokens: int = 50
    repeats: int = 1                      # loads and generations per model/prompt; median + spread
    seed: int = 0
    dtype: str = "float32"                # float32 | float16 | bfloat16 | auto (the checkpoint's)
    device: str = "cpu"                   # cpu | cuda
    threads: int = 0                      # torch intra-op threads; 0 = torch's default
    trust_remote_code: bool = False
    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    warmup_tokens: int = 8                # untimed generate before the timed ones
    timeout_s: float = 3600.0             # per model (its child process), then it is killed
    html: bool = False                    # also write benchmark.html (table + charts, self-contained)
    charts: bool = True

    def __post_init__(self) -> None:
        for name in ("models", "prompts"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise LTSError(f"{name} must be a list of strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.models:
            raise LTSError("no model given: pass one or more hub ids or local model folders")
        for i, m in enumerate(self.models):
            if not m.strip():
                raise LTSError("empty model name")
            if m in self.models[:i]:
                raise LTSError(f"model given twice: {m}")
        if self.prompts_file is None:
            check_prompts(self.prompts, "prompts")
        _check_int("max_new_tokens", self.max_new_tokens, 1)
        _check_int("repeats", self.repeats, 1)
        _check_int("seed", self.seed, 0)
        _check_int("threads", self.threads, 0)
        _check_int("top_k", self.top_k, 0)
        _check_int("warmup_tokens", self.warmup_tokens, 0)
        if self.dtype not in DTYPES:
            raise LTSError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device not in DEVICES:
            raise LTSError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name, low, high in (("temperature", 0.0, math.inf), ("top_p", 0.0, 1.0), ("timeout_s", 0.0, math.inf)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low < value <= high):
                raise LTSError(f"{name} must be a number in ({low}, {high}], got {value!r}")
        for name in ("trust_remote_code", "do_sample", "html", "charts"):
            if not isinstance(getattr(self, name), bool):
                raise LTSError(f"{name} must be true or false, got {getattr(self, name)!r}")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise LTSError(f"{name} must be an integer >= {low}, got {value!r}")


# ---------------------------------------------------------------- metrics (pure)

def words_of(text: str) -> list[str]:
    """Whitespace-separated words, lower-cased, punctuation stripped at both ends; empties dropped."""
    out = []
    for w in text.lower().split():
        w = w.strip(string.punctuation + "“”‘’«»…")
        if w:
            out.append(w)
    return out


def diversity(text: str) -> tuple[float, float]:
    """(unique words / words, unique word bigrams / bigrams) of `text`; 0.0 when there are none."""
    words = words_of(text)
    uni = len(set(words)) / len(words) if words else 0.0
    bigrams = list(zip(words, words[1:]))
    bi = len(set(bigrams)) / len(bigrams) if bigrams else 0.0
    return uni, bi


def median_spread(values: Sequence[float]) -> tuple[float, float]:
    """Median and spread (max - min) of repeated measurements."""
    return float(statistics.median(values)), float(max(values) - min(values))
