"""``lts compare`` (and ``python benchmark.py``): the flags of a model comparison, and its main.

    lts compare gpt2 facebook/opt-125m path/to/trained_model --repeats 3 --html

Writes results.csv (one row per model x prompt) and PNG charts into --out.
"""

from __future__ import annotations

import argparse

from lts.compare.settings import BenchSettings
from lts.core.cli import ArgumentParser
from lts.core.errors import LTSError

SETTINGS = BenchSettings  # every setting, declared once (lts.core.settings)
DESCRIPTION = "Compare language models side by side: loading time, generation time, diversity, memory."
DEFINITIONS = """\
columns of results.csv (one row per model x prompt; MB = MiB = 2**20 bytes):
  Loading Time (s)         files on disk -> ready model + tokenizer (torch/transformers already
                           imported, hub files already downloaded); median over --repeats loads
  Generation Time (s)      wall time of one model.generate (KV cache, batch 1) producing exactly
                           --max-new-tokens tokens (EOS suppressed), after an untimed warm-up;
                           median over --repeats; the spread column is max - min
  Time to First Token (s)  generate() call -> first new token;  Tokens/s = New Tokens / Generation Time
  Diversity Score          unique words / total words of the generated continuation (lower-cased,
                           punctuation stripped; 0 if none);  Distinct-2: the same for word bigrams
  Memory Usage (MB)        estimate: parameters x bytes per parameter of the loaded dtype
  Peak Memory (MB)         measured peak RSS of the child process that ran the model (incl. torch)
  Model Memory (MB)        Peak Memory minus that process's RSS just before loading the model
  Status                   ok, or "failed: reason"

files in --out: results.csv; benchmark_time.png (loading + generation, stacked), benchmark_diversity.png,
benchmark_memory.png (estimate vs measured); benchmark.html with --html (one self-contained page).
default prompts: "In the near future, robots and humans" / "Artificial intelligence will change the
world in" / "Data centers are critical to modern infrastructure because".

each model runs in its own child process, one at a time; sampling is seeded (torch.manual_seed
before every generate) so the same seed gives the same text. A model that cannot be found, whose
files are broken (config.json not JSON, a corrupt or cut-short .safetensors: checked before anything
runs) or that fails while running is a failed row and the others still run; when no model passes
the check, the run stops with exit status 2 and writes nothing. Exit status 1 when every model
failed while running.
Offline (HF_HUB_OFFLINE=1) a hub id works only if it is already in the Hugging Face cache.
"""


def parse_args(argv: list[str] | None, prog: str | None = None) -> tuple[ArgumentParser, argparse.Namespace]:
    """The parser and the parsed flags; `prog` names the program in usage and errors (default: the script's
    name). Every setting's flag comes from its declaration in :class:`lts.compare.settings.BenchSettings`."""
    p = ArgumentParser(prog=prog, description=DESCRIPTION, epilog=DEFINITIONS,
                       formatter_class=argparse.RawDescriptionHelpFormatter, settings=BenchSettings, preset="benchmark")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p, p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Compare the models in `argv` (default: ``sys.argv[1:]``); 0 when at least one model ran, else 1."""
    parser, args = parse_args(argv, prog)
    from lts.compare.runner import run_benchmark, summary_table

    if args.prompts_file is not None and args.prompts:
        raise LTSError("give --prompt or --prompts-file, not both")
    preset = parser.preset_of(args)
    if args.prompts_file is not None or args.prompts:  # command-line prompts replace the preset's
        preset = {k: v for k, v in preset.items() if k not in ("prompts", "prompts_file")}
    settings = parser.settings_from(args, preset=preset)
    result = run_benchmark(settings, progress=False if args.no_progress else None)

    print(summary_table(result))
    ok_models = len(settings.models) - len(result.failed)
    print(f"\n{len(settings.models)} model(s) x {len(result.prompts)} prompt(s); "
          f"{settings.max_new_tokens} new tokens, {settings.dtype}, {settings.device}, median of {settings.repeats}")
    print(f"wrote {result.csv_path}" + "".join(f", {p.name}" for p in result.charts)
          + (f", {result.html_path.name}" if result.html_path else ""))
    if result.failed:
        print(f"{len(result.failed)} of {len(settings.models)} model(s) failed (see Status in the CSV):")
        for model, reason in result.failed.items():
            print(f"  {model}: {reason}")
    return 0 if ok_models else 1

