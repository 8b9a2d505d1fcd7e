"""What a model comparison (``benchmark.py``) is asked to do, and the pure definitions of its figures.

Settings and prompts are validated here; ``diversity`` and ``median_spread`` define the
text and timing figures (see ``lts.compare.runner`` for every column's definition).
"""

from __future__ import annotations

import statistics
import string
from dataclasses import dataclass
from typing import Sequence

from lts.core.errors import LTSError
from lts.core.fileio import check_prompts
from lts.core.settings import Boolean, Choice, Integer, Number, Optional, Settings, Text, Texts, setting

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
class BenchSettings(Settings):
    """Everything a comparison depends on (``lts compare -h`` lists them; preset < flags)."""

    models: tuple[str, ...] = setting((), "hub id (gpt2, facebook/opt-125m) or local model folder", Texts(),
                                      flag="models", nargs="*", metavar="MODEL")
    prompts: tuple[str, ...] = setting(DEFAULT_PROMPTS, "a prompt (repeat the flag for several); replaces the "
                                                        "default prompts", Texts(), flag="--prompt", append=True,
                                       metavar="TEXT")
    prompts_file: str | None = setting(None, "file of prompts: one per line (blank lines skipped), or a .json list; "
                                             "replaces the prompts", Optional(Text(nonempty=True)))
    out: str = setting(".", "folder for results.csv, charts and benchmark.html", Text(nonempty=True))
    max_new_tokens: int = setting(50, "tokens generated per prompt (EOS suppressed)", Integer(ge=1))
    repeats: int = setting(1, "loads and generations per model/prompt; the CSV reports median and spread",
                           Integer(ge=1))
    seed: int = setting(0, "sampling seed (torch.manual_seed before every generate)", Integer(ge=0))
    dtype: str = setting("float32", "auto: the checkpoint's dtype", Choice(DTYPES))
    device: str = setting("cpu", "where the models run", Choice(DEVICES))
    threads: int = setting(0, "torch threads in each model's process (0: torch's default; the CSV records the "
                              "number used)", Integer(ge=0))
    trust_remote_code: bool = setting(False, "allow models that ship their own Python code (runs that code!)",
                                      Boolean())
    do_sample: bool = setting(True, "greedy decoding, no sampling", Boolean(), flag="--greedy")
    temperature: float = setting(1.0, "sampling temperature", Number(gt=0))
    top_k: int = setting(50, "keep the k most likely tokens; 0 disables", Integer(ge=0))
    top_p: float = setting(1.0, "nucleus sampling mass in (0, 1]", Number(gt=0, le=1))
    warmup_tokens: int = setting(8, "tokens of an untimed generate on the first prompt before timing",
                                 Integer(ge=0))
    timeout_s: float = setting(3600.0, "seconds per model (its child process) before it is killed and reported "
                                       "failed", Number(gt=0), flag="--timeout")
    html: bool = setting(False, "also write benchmark.html (table + charts in one self-contained file)", Boolean())
    charts: bool = setting(True, "skip the PNG charts", Boolean(), flag="--no-charts")

    def check(self) -> None:
        if not self.models:
            raise LTSError("no model given: pass one or more hub ids or local model folders")
        for i, m in enumerate(self.models):
            if not m.strip():
                raise LTSError("empty model name")
            if m in self.models[:i]:
                raise LTSError(f"model given twice: {m}")
        if self.prompts_file is None:
            check_prompts(self.prompts, "prompts")


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
