#!/usr/bin/env python
"""Render docs/results/*.md from the benchmarks' JSON files and the committed models/ folder.

    python -m benchmarks.results_pages                    # writes docs/results/
    python -m benchmarks.results_pages --out /tmp/pages   # the same pages elsewhere (tests/test_docs.py)

The pages are generated, never edited by hand: re-run a benchmark, then this script, and commit
both the JSON and the pages. tests/test_docs.py checks that the committed pages are what this
script writes.

Pages (each from the JSON files whose name is the page's prefix, or the prefix + ``-...``; the benchmark that
writes them is run as ``python -m benchmarks.<name>``):

    default-front.md  models/front.json + models/<archid>/metrics.json + config.json (a real run's record)
    generation.md     benchmarks/results/generation*.json        generation
    training.md       benchmarks/results/train_throughput*.json  train_throughput
                      benchmarks/results/train_layouts*.json     train_throughput --layouts
    proxy.md          benchmarks/results/proxy_validation*.json  proxy_validation
    proxy-validation-llama.md  benchmarks/results/proxy_validation_llama*.json  proxy_validation --family llama
    llama-layer.md    benchmarks/results/llama_layer*.json       llama_layer
    robustness.md     benchmarks/results/robustness_{remeasure,compare,drift}*.json  robustness
    int8.md           benchmarks/results/int8_quality*.json      int8_quality
    heterogeneity.md  benchmarks/results/heterogeneity*.json     heterogeneity
    search-quality.md benchmarks/results/search_quality*.json    search_quality
    composition-fidelity.md  benchmarks/results/composition_fidelity*.json  composition_fidelity
    cost-prediction.md  benchmarks/results/cost_prediction*.json  cost_prediction
    memory-options.md  benchmarks/results/memory_options*.json  memory_options
    per-layer-search.md  benchmarks/results/per_layer_search*.json  per_layer_search
    latency-fidelity.md  benchmarks/results/latency_fidelity*.json  latency_kinds fidelity
    latency-kinds.md  benchmarks/results/latency_kinds*.json     latency_kinds kinds
    evaluators.md     benchmarks/results/evaluators*.json        evaluators
    evaluate-speed.md  benchmarks/results/evaluate_speed*.json   evaluate_speed
    precision-fronts.md  benchmarks/results/precision_fronts*.json  precision_fronts
    ray-scaling.md    benchmarks/results/ray_scaling*.json       ray_scaling
    README.md         the index

A page with no JSON yet says so in one line and gives the command that writes it.

The JSON schema (written by ``write_result`` in benchmarks/_results.py; one file per run)::

    {
      "benchmark":  "generation",                        # name; the file is benchmarks/results/<name>.json
      "command":    "python -m benchmarks.generation ...",  # as run, repo-relative
      "date":       "2026-12-05T10:11:12+00:00",         # when it finished, UTC, ISO 8601
      "machine":    {"cpu": "AMD EPYC ...", "cores": 2, "system": "Linux", "arch": "x86_64", "isa": ["avx2"]},
      "threads":    2,                                   # threads the measured code used (null: n/a)
      "versions":   {"python": "3.11.9", "torch": "...", "onnxruntime": "...", "transformers": "...",
                     "pymoo": "..."},                    # importlib.metadata; absent libraries left out
      "conditions": {"new_tokens": 128, ...},            # every setting that decides the figures
      "rows":       [{"model": "6x512", "tokens_per_s": 286.5, ...}, ...],
                    # one object per measured row; columns in first-seen key order; a row's optional
                    # "table" key names the table it belongs to (rows without one form the first table)
      "table":      {"columns": [...], "rows": [[...], ...]},   # instead of "rows": a ready table
      "summary":    {"spearman_non_embedding_params": 0.9, ...},  # optional: single figures
      "notes":      "free text"                          # optional
    }

Cells: numbers are printed as they are stored (floats to 4 significant digits, thousands separated
from 1,000 on), booleans as yes/no, null as "—"; a benchmark that wants a cell shown its own way
stores a string.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks._results import ISA_FLAGS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MODELS = REPO / "models"
OUT = REPO / "docs" / "results"
SCRIPT = "benchmarks/results_pages.py"  # the pages' banner names this file
COMMAND = "python -m benchmarks.results_pages"  # how to run it


class Page:
    def __init__(self, name: str, title: str, prefixes: tuple[str, ...], commands: tuple[str, ...],
                 about: str) -> None:
        self.name, self.title, self.prefixes, self.commands, self.about = name, title, prefixes, commands, about


PAGES = (
    Page("generation", "Generation speed", ("generation",),
         ("python -m benchmarks.generation", "python -m benchmarks.generation --sizes 6x512 --vocab 4096",
          "python -m benchmarks.generation --models models/A,models/B,models/C"),
         "greedy decoding: transformers' generate vs LTS's ONNX Runtime loop (fp32, int8) vs Optimum and "
         "CTranslate2 (float32, int8); the memory-bus ceiling; batches 1, 4, 16; random GPT-2s and three members "
         "of the committed front"),
    Page("llama-layer", "Llama's generation layer: fused vs exported", ("llama_layer",),
         ("python -m benchmarks.llama_layer",),
         "the Llama generation graph with its layer written with ONNX's fused RMSNormalization, RotaryEmbedding and "
         "Attention against transformers' eager layer exported: decode steps, prefill, load time and peak memory "
         "on SmolLM2-135M's and SmolLM2-360M's shapes, same weights, interleaved rounds"),
    Page("latency-fidelity", "Decode latency: the search's figure vs generate_text.py", ("latency_fidelity",),
         ("python -m benchmarks.latency_kinds fidelity --seed 1",),
         "the evaluator's onnx_decode_latency_s and onnx_generation_memory_mb against what generate_text.py "
         "--backend onnx takes and holds on the same architectures (held-out: seed 1), in interleaved rounds"),
    Page("training", "Training throughput", ("train_throughput", "train_layouts"),
         ("python -m benchmarks.train_throughput", "python -m benchmarks.train_throughput --layouts"),
         "train.py's loop vs transformers' Trainer; processes, threads and --compile on the CPU"),
    Page("proxy", "Proxy validation", ("proxy_validation",), ("python -m benchmarks.proxy_validation --seeds 0,1",),
         "does the training-free proxy rank architectures as training does"),
    Page("proxy-validation-llama", "Proxy validation on Llama", ("proxy_validation_llama",),
         ("python -m benchmarks.proxy_validation --family llama --steps 200 --seeds 0,1",),
         "the same question for Llama: non-embedding parameters against trained validation loss on 16 shapes in "
         "equal-parameter groups (deep-thin vs shallow-wide, all KV heads vs one), beside GPT-2's figure"),
    Page("robustness", "Robustness of the front", ("robustness_remeasure", "robustness_compare", "robustness_drift"),
         ("python -m benchmarks.robustness remeasure RUN", "python -m benchmarks.robustness compare RUN_A RUN_B",
          "python -m benchmarks.robustness drift"),
         "re-measured fronts, two runs on one scale, latency under a slowdown"),
    Page("int8", "INT8 quality", ("int8_quality",),
         ("python -m benchmarks.int8_quality --train 4,256,1024,4 --steps 1200",),
         "validation perplexity and greedy tokens, fp32 vs int8 weights"),
    Page("heterogeneity", "Homogeneous vs per-layer search", ("heterogeneity",),
         ("python -m benchmarks.heterogeneity",),
         "the LTS paper's ranges searched with one block shape for every layer and with a shape per layer, "
         "equal budgets, both fronts on one scale"),
    Page("search-quality", "Search quality", ("search_quality",), ("python -m benchmarks.search_quality",),
         "NSGA-II and random search at equal budgets (the default, 216, and larger) against the exact front "
         "of Archai's space (search.py --strategy exhaustive): hypervolume ratio, exact-front members found"),
    Page("composition-fidelity", "Composed vs whole costs", ("composition_fidelity",),
         ("python -m benchmarks.composition_fidelity",),
         "latency and forward peak memory composed from parts (the embeddings-and-head part plus one block per "
         "layer) against the whole graph measured, held-out architectures of the default and per-layer spaces"),
    Page("cost-prediction", "Predicted vs whole costs", ("cost_prediction",),
         ("python -m benchmarks.cost_prediction",),
         "what a search predicts (latency from the whole graph's model fitted on an earlier front's whole timings, "
         "or composed from timed or predicted part shapes as a first search on a machine does; peak memory "
         "predicted) against the whole graph measured, held-out architectures of the default and per-layer "
         "spaces, with what fitting the models cost"),
    Page("memory-options", "Peak memory: session options and the allocator", ("memory_options",),
         ("python -m benchmarks.memory_options",),
         "a forward's peak memory (session load and first run apart) under ONNX Runtime's CPU session options and "
         "a fixed glibc mmap threshold: which phase sets it, how it repeats, how a process's history moves it, and "
         "how well the graph's features predict it"),
    Page("per-layer-search", "The per-layer space searched end to end", ("per_layer_search",),
         ("python -m benchmarks.per_layer_search",),
         "the LTS paper's per-layer space searched as search.py does it (block table, NSGA-II, the front timed "
         "whole), each phase timed on a fresh store"),
    Page("latency-kinds", "Latency kinds: full forward, prefill, decode", ("latency_kinds",),
         ("python -m benchmarks.latency_kinds kinds",),
         "how full-forward, prefill and decode latency rank the same architectures, the fronts they make, and a "
         "decode latency composed from 1- and 2-layer twins against the whole graph's"),
    Page("evaluate-speed", "What one lts evaluate costs", ("evaluate_speed",),
         ("python -m benchmarks.evaluate_speed",),
         "lts evaluate of a fresh architecture as a user runs it (a process and an empty store each): the whole "
         "forward graph measured once, the reference graph timed beside it as its calibration"),
    Page("evaluators", "The evaluator against the real export", ("evaluators",),
         ("python -m benchmarks.evaluators",),
         "a fresh and a cached evaluation's time, and LTS's latency and memory against torch.onnx.export's graph "
         "and the same file measured from outside, over a fixed set of architectures"),
    Page("precision-fronts", "INT8 vs fp32 searches", ("precision_fronts",),
         ("python -m benchmarks.precision_fronts RUN_FP32 RUN_INT8",),
         "two search runs of one space and seed, fp32 and --precision int8: how their figures rank alike and "
         "how their fronts differ"),
    Page("ray-scaling", "Search on a Ray cluster", ("ray_scaling",), ("python -m benchmarks.ray_scaling",),
         "candidates per minute on Ray clusters of 1 and 2 worker nodes against the local engine, and Ray's "
         "overhead per task"),
)

FRONT_COLUMNS = (  # metrics.json key, header, format
    ("non_embedding_params", "non-embedding parameters", lambda v: f"{v:,}"),
    ("onnx_latency_s", "latency (ms)", lambda v: f"{v * 1e3:.1f}"),
    ("onnx_latency_cv", "latency CV", lambda v: f"{v:.3f}"),
    ("onnx_memory_mb", "peak memory (MiB)", lambda v: f"{v:.1f}"),
    ("onnx_decode_latency_s", "decode step (ms)", lambda v: f"{v * 1e3:.2f}"),
    ("onnx_generation_memory_mb", "generation memory (MiB)", lambda v: f"{v:.1f}"),
    ("onnx_file_mb", "ONNX file (MiB)", lambda v: f"{v:.1f}"),
)
SHAPE = ("n_layer", "n_embd", "n_inner", "n_head")


def rel(path: Path) -> str:
    """`path` as the pages name it: repo-relative when inside the repo."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def banner(sources: list[str]) -> str:
    return f"Generated by `{SCRIPT}` from {', '.join(f'`{s}`' for s in sources)} — do not edit.\n"


def cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(cell(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {cell(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return out


def row_tables(rows: list[dict[str, Any]]) -> list[tuple[str | None, list[str], list[list[Any]]]]:
    """Rows grouped by their optional "table" key, in first-seen order; columns = keys in first-seen order."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("table"), []).append(r)
    out = []
    for title, members in groups.items():
        columns: list[str] = []
        for r in members:
            columns += [k for k in r if k != "table" and k not in columns]
        out.append((title, columns, [[r.get(c) for c in columns] for r in members]))
    return out


def result_section(path: Path, data: dict[str, Any]) -> list[str]:
    m = data.get("machine") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (data.get("versions") or {}).items())
    threads = data.get("threads")
    lines = [f"## {path.stem}", "",
             f"`{data.get('command', '?')}`", "",
             f"- date: {data.get('date', '?')}",
             f"- machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores"
             + (f", {m['system']} {m.get('arch', '')}".rstrip() if m.get("system") else "")
             + (f" ({', '.join(m['isa']) or 'none of ' + '/'.join(ISA_FLAGS)})" if "isa" in m else ""),
             f"- threads: {threads if threads is not None else 'n/a'}",
             f"- versions: {versions or '?'}"]
    conditions = data.get("conditions") or {}
    if conditions:
        lines.append("- conditions: " + "; ".join(f"{k} {cell(v)}" for k, v in conditions.items()))
    lines.append("")
    if "rows" in data:
        for title, columns, rows in row_tables(data["rows"]):
            if title:
                lines += [f"### {title}", ""]
            lines += [*md_table(columns, rows), ""]
    if "table" in data:
        lines += [*md_table(list(data["table"]["columns"]), [list(r) for r in data["table"]["rows"]]), ""]
    if data.get("summary"):
        lines += [*md_table(["figure", "value"], [[k, v] for k, v in data["summary"].items()]), ""]
    if data.get("notes"):
        lines += [str(data["notes"]), ""]
    return lines


def page_files(page: Page, results: Path) -> list[Path]:
    files = sorted(results.glob("*.json")) if results.is_dir() else []
    return [f for f in files if any(f.stem == p or f.stem.startswith(p + "-") for p in page.prefixes)]


def render_page(page: Page, results: Path) -> tuple[str, list[str]]:
    """(the page's Markdown, the dates of its results)."""
    files = page_files(page, results)
    sources = [f"{rel(results)}/{p}*.json" for p in page.prefixes]
    lines = [banner(sources), f"# {page.title}", "", f"What it measures: {page.about}.", ""]
    dates = []
    if not files:
        commands = "`, then `".join(page.commands)
        lines += [f"Not measured yet: run `{commands}`, then `{COMMAND}`.", ""]
    for f in files:
        data = json.loads(f.read_text())
        dates.append(str(data.get("date", "?")))
        lines += result_section(f, data)
    lines += ["Earlier figures recorded by hand: [history.md](../history.md).", ""]
    return "\n".join(lines), dates


def render_front(models: Path) -> tuple[str, str]:
    """(the default-front page, a one-line status for the index) from the committed models/ folder."""
    manifest_path = models / "front.json"
    lines = [banner([rel(manifest_path), f"{rel(models)}/<archid>/metrics.json"]), "# The default front", ""]
    if not manifest_path.is_file():
        lines += [f"Not recorded yet: run `python search.py`, then `{COMMAND}`.", ""]
        return "\n".join(lines), "not recorded yet"
    manifest = json.loads(manifest_path.read_text())
    c = manifest.get("conditions") or {}
    members = []
    for archid in sorted(manifest.get("members") or {}):
        metrics = json.loads((models / archid / "metrics.json").read_text())
        config = json.loads((models / archid / "config.json").read_text())
        members.append((archid, metrics, config))
    members.sort(key=lambda m: (m[1].get("non_embedding_params") or 0, m[0]))
    runs = sorted({str(m[1].get("run")) for m in members} | ({str(manifest["run"])} if manifest.get("run") else set()))
    robust = sum(1 for m in members if m[1].get("robust"))
    hw = c.get("hardware") or {}
    lines += [
        "The Pareto front committed in `models/`, as the search that wrote it recorded it. Each member is a "
        "folder holding `config.json` (train it with `lts train models/<archid>`) and `metrics.json`.",
        "",
        f"- run: {', '.join(f'`{r}`' for r in runs)}",
        f"- members: {len(members)}, {robust} of them robust to noise (`yes`); `noise`: its place on the front "
        "rests on differences within measured noise",
        f"- measured with: {c.get('describe', '?')}",
        f"- hardware: {hw.get('cpu', '?')}, {hw.get('cores', '?')} cores, {hw.get('system', '?')} "
        f"{hw.get('machine', '')}, onnxruntime {hw.get('onnxruntime', '?')} (fingerprint `{hw.get('id', '?')}`)",
        f"- conditions: batch {c.get('batch', '?')}, seq_len {c.get('seq_len', '?')}, {c.get('threads', '?')} "
        f"threads, latency mode `{c.get('latency_mode', '?')}`, target `{c.get('target', '?')}`; latencies at the "
        f"run's calibration (reference graph {c.get('calibration_ms', '?')} ms)",
        "",
        "![params vs latency](../../assets/pareto_non_embedding_params_vs_onnx_latency.png)",
        "![params vs memory](../../assets/pareto_non_embedding_params_vs_onnx_memory.png)",
        "",
        "The plots are the ones the search wrote to `assets/`: every candidate grey, the front red (filled: robust; "
        "hollow: within noise), bars: each value's noise.",
        "",
    ]
    columns = [col for col in FRONT_COLUMNS if any(m[1].get(col[0]) is not None for m in members)]
    header = ["archid", "robust", *(h for _, h, _ in columns), *SHAPE]
    lines += ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for archid, metrics, config in members:
        values = ["—" if metrics.get(k) is None else fmt(metrics[k]) for k, _, fmt in columns]
        shape = [str(config.get(k, "?")) for k in SHAPE]
        # No link into models/: a search of the user's own replaces those folders (the README's first command does).
        lines.append(f"| `{archid}` | "
                     f"{'yes' if metrics.get('robust') else 'noise'} | " + " | ".join([*values, *shape]) + " |")
    lines.append("")
    # The index says where the page comes from, not what models/ holds now: it must not change when a user's
    # search replaces models/.
    return "\n".join(lines), "generated from the committed models/"


def render_index(statuses: list[tuple[str, str, str]]) -> str:
    lines = [banner([f"{rel(RESULTS)}/*.json", f"{rel(MODELS)}/"]), "# Results", "",
             "Measured results, each page generated from the JSON a benchmark wrote (its command, date, machine, "
             "threads and library versions are on the page). To refresh one: run the benchmark, then "
             f"`{COMMAND}`, and commit both. Figures recorded by hand before these pages existed are in "
             "[history.md](../history.md).", "",
             "| page | what | status |", "|---|---|---|"]
    for name, about, status in statuses:
        lines.append(f"| [{name}]({name}.md) | {about} | {status} |")
    lines.append("")
    return "\n".join(lines)


def render_all(results: Path = RESULTS, models: Path = MODELS) -> dict[str, str]:
    """File name -> Markdown of every page."""
    pages: dict[str, str] = {}
    front, front_status = render_front(models)
    pages["default-front.md"] = front
    statuses = [("default-front", "the Pareto front committed in models/", front_status)]
    for page in PAGES:
        text, dates = render_page(page, results)
        pages[f"{page.name}.md"] = text
        statuses.append((page.name, page.about, f"measured {', '.join(d[:10] for d in dates)}" if dates
                         else "not measured yet"))
    pages["README.md"] = render_index(statuses)
    return pages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the benchmarks' JSON files")
    p.add_argument("--models", type=Path, default=MODELS, help="the committed front (front.json, <archid>/)")
    p.add_argument("--out", type=Path, default=OUT, help="where the pages go (default docs/results)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all(args.results, args.models).items():
        (args.out / name).write_text(text)
    print(f"wrote {len(PAGES) + 2} pages to {rel(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
