#!/usr/bin/env python
"""Which ONNX Runtime CPU session options make a forward's peak memory deterministic and predictable from the graph.

    python -m benchmarks.memory_options                          # 30 + 10 architectures, seed 1, every option
    python -m benchmarks.memory_options --default 8 --per-layer 4 --options default,no_arena

The "memory" probe (lts/cost/probes.py) measures a forward's peak as: in a fresh child, the RSS before, then a
session of the whole forward graph made and one forward run at ``seq_len``; the kernel's high-water mark
(``VmHWM`` after ``clear_refs``) minus that RSS. Here the same, per session option set (:data:`OPTIONS`, each
applied on top of ``CPUTarget.session_options()``), in two phases, each its own window over the same baseline:

- load: ``InferenceSession(path)`` (the file parsed, initializers copied, constants folded, weights pre-packed);
- run: the first forward (the activations; with memory patterns on, the plan for this shape is made here).

Every measurement is a fresh child forked from lts's measuring fork server (``lts.cost.child``); graphs are
written once per architecture (``lts.cost.scratch``, the weights ``tiled_weights`` writes, as the probe's).
Architectures: ``--default`` drawn (seeded) from search.py's default space and ``--per-layer`` from the LTS paper's
(configs/search-lts-paper.yaml), at ``--seq-len``; the first ``--short`` of each space again at ``--short-seq-len``;
the first ``--repeat-archs`` measured ``--repeats`` times per option (repeatability). Per option, the peak is fitted
leave-one-out by a non-negative linear model on the graph's features (``lts.cost.features.arch_features``:
:data:`FIT_FEATURES`, least squares on the relative error): median and worst |error|, Spearman.

Writes benchmarks/results/memory_options.json: per option, the load and run peaks, which phase sets the peak, the
repeats' spread and the fit; per architecture, every option's peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks._cli import add_json_flag, add_threads_flag
from benchmarks._results import print_table, write_result
from benchmarks._stats import spearman
from lts.core.onnxgraph import tiled_weights
from lts.cost.child import MeasureError, child_process
from lts.cost.features import arch_features
from lts.cost.feeds import token_feeds
from lts.cost.measure import measure_architecture
from lts.cost.scratch import scratch_folders, write_graph
from lts.cost.settings import MeasureSettings
from lts.cost.target import CPUTarget
from lts.families import Arch, arch_from_dict, to_record
from lts.search.space import space_from_dict

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20
HISTORY_BYTES = 16 * MIB
FIT_FEATURES = ("weight_bytes", "largest_bytes", "largest_quad_bytes", "elems", "1")

# Each option set: SessionOptions attributes ("attrs"), session config entries ("config"), an arena config
# registered on the environment ("env_arena": the CPU provider's own options, arena_extend_strategy included, are
# silently ignored by the Python API, so the env allocator is the only way to change the CPU arena's extend
# strategy), and glibc malloc parameters set in the measuring process ("mallopt": no session option reaches
# them, yet they decide what of the memory freed while a session loads stays resident).
FIXED_MMAP = {"M_MMAP_THRESHOLD": MIB}
OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_arena": {"attrs": {"enable_cpu_mem_arena": False}},
    "same_as_requested": {"env_arena": {"arena_extend_strategy": 1}},
    "no_mem_pattern": {"attrs": {"enable_mem_pattern": False}},
    "no_prepack": {"config": {"session.disable_prepacking": "1"}},
    "init_outside_arena": {"config": {"session.use_device_allocator_for_initializers": "1"}},
    "fixed_mmap": {"mallopt": FIXED_MMAP},
    "no_arena+fixed_mmap": {"attrs": {"enable_cpu_mem_arena": False}, "mallopt": FIXED_MMAP},
    "no_prepack+fixed_mmap": {"config": {"session.disable_prepacking": "1"}, "mallopt": FIXED_MMAP},
}


def describe_option(option: dict[str, Any]) -> str:
    """An option set as one would write it in code."""
    parts = [f"so.{k} = {v}" for k, v in option.get("attrs", {}).items()]
    parts += [f'so.add_session_config_entry("{k}", "{v}")' for k, v in option.get("config", {}).items()]
    if "env_arena" in option:
        parts.append(f"env allocator OrtArenaCfg({option['env_arena']}) + session.use_env_allocators=1")
    parts += [f"mallopt({k}, {v})" for k, v in option.get("mallopt", {}).items()]
    return "; ".join(parts) or "CPUTarget.session_options() as it is"


def session_options(target: CPUTarget, option: dict[str, Any]) -> Any:
    """`target`'s SessionOptions with `option` applied (registers the env arena, in this process, when asked)."""
    import onnxruntime as ort

    so = target.session_options()
    for name, value in option.get("attrs", {}).items():
        setattr(so, name, value)
    for key, value in option.get("config", {}).items():
        so.add_session_config_entry(key, value)
    if "env_arena" in option:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(option["env_arena"]))
        so.add_session_config_entry("session.use_env_allocators", "1")
    return so


def _measure_child(conn: Any, path: str, option: dict[str, Any], target: CPUTarget, seq_len: int,
                   vocab_size: int, history: bool = False) -> None:
    """In a fresh child: the load and first-run peaks (bytes over the RSS before the session), as the probe's window
    but split in two; the RSS left after each phase. `history`: a 16 MiB block allocated and freed first, as any
    process that held a large array before (glibc raises its mmap threshold to the largest block freed)."""
    import gc

    import onnxruntime as ort

    for param, value in option.get("mallopt", {}).items():
        _mallopt(param, value)
    if history:
        block = np.ones(HISTORY_BYTES // 8)
        del block
    feeds = token_feeds(seq_len, vocab_size)  # made before the baseline, as the probe's
    so = session_options(target, option)
    gc.collect()
    base = target.memory_bytes()
    if not target.reset_peak_memory():
        raise MeasureError("this benchmark needs the kernel's peak (Linux clear_refs)")
    sess = ort.InferenceSession(path, so, providers=target.providers())
    # the RSS first, then the high-water mark: a page touched between the two reads (Python's own) could
    # otherwise put "after" above the peak read before it (seen once on 2 loaded cores, by 4 KiB)
    after_load = target.memory_bytes() - base
    load = target.peak_memory_bytes() - base
    target.reset_peak_memory()  # the high-water mark restarts at the RSS now: the run's own window
    sess.run(None, feeds)
    after_run = target.memory_bytes() - base
    run = target.peak_memory_bytes() - base
    conn.send(("done", {"load": load, "after_load": after_load, "run": run, "after_run": after_run}))


_MALLOPT = {"M_TRIM_THRESHOLD": -1, "M_MMAP_THRESHOLD": -3}  # glibc's malloc.h


def _mallopt(param: str, value: int) -> None:
    """Set glibc malloc's `param` in this process (a fixed mmap threshold turns off glibc's dynamic one, which
    otherwise rises to the largest block freed so far and keeps later blocks of that size on the heap)."""
    import ctypes

    if ctypes.CDLL(None).mallopt(_MALLOPT[param], value) != 1:
        raise MeasureError(f"mallopt({param}, {value}) failed (not glibc?)")


def measure_once(path: Path, option: dict[str, Any], target: CPUTarget, seq_len: int, vocab_size: int,
                 timeout_s: float, history: bool = False) -> dict[str, int]:
    """One measurement of the graph at `path` with `option`, in a fresh child (`history`: see _measure_child)."""
    with child_process(_measure_child, (str(path), option, target, seq_len, vocab_size, history), timeout_s,
                       "lts-memory-options") as child:
        kind, payload = child.recv()
    if kind == "error":
        raise MeasureError(payload)
    return payload


def held_out(n_default: int, n_per_layer: int, seed: int) -> list[tuple[str, Arch]]:
    """`n_default` architectures drawn uniformly (seed `seed`) from the default space, `n_per_layer` from the LTS
    paper's per-layer space; (space name, architecture) each, no architecture twice."""
    paper = yaml.safe_load((REPO / "configs" / "search-lts-paper.yaml").read_text())["space"]
    out = []
    for name, space, count in (("default", space_from_dict({}), n_default),
                               ("per-layer", space_from_dict(paper), n_per_layer)):
        rng = np.random.default_rng(seed)
        seen: dict[str, Arch] = {}
        while len(seen) < count:
            arch = space.sample(rng)
            seen.setdefault(arch.archid, arch)
        out += [(name, a) for a in seen.values()]
    return out


def measure_arch(arch: Arch, seq_len: int, options: list[str], fresh: int, history: set[str],
                 args: argparse.Namespace, target: CPUTarget, scratch: list[str]) -> dict[str, list[dict[str, Any]]]:
    """{option: [measurement, ...]} of `arch`'s whole forward graph at `seq_len`, written once: `fresh` measurements
    per option, then one in a child with a heap history (a 16 MiB block freed first) for the options in
    `history`; each says which it is under "history"."""
    path, _ = write_graph(scratch, "full.onnx", arch, "full", tiled_weights())
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        for name in options:
            kinds = [False] * fresh + ([True] if name in history else [])
            out[name] = [{**measure_once(path, OPTIONS[name], target, seq_len, arch.vocab_size, args.timeout,
                                         history=h), "history": h} for h in kinds]
    finally:
        path.unlink(missing_ok=True)
    return out


def probe_peak(arch: Arch, seq_len: int, target: CPUTarget, timeout_s: float) -> int:
    """The peak LTS's own "memory" probe measures (its own child, graph written there): the cross-check that the
    "default" option measures what the search does."""
    settings = MeasureSettings(seq_len=seq_len, timeout_s=timeout_s)
    return measure_architecture(arch, settings, target, ("memory",), parts=()).get("memory")["bytes"]


# ----------------------------------------------------------------------------- the fit

def features(arch: Arch, seq_len: int) -> dict[str, float]:
    """`arch`'s graph features at `seq_len` (``arch_features``), with the constant "1" and ``largest_weight_bytes``
    (the largest single weight: a constant ONNX Runtime folds into a copy while the session loads, such as a tied
    head's transposed embedding, is at most that big)."""
    out = dict(arch_features(arch, seq_len))
    out["1"] = 1.0
    out["largest_weight_bytes"] = float(max(4 * int(np.prod(shape)) for _, shape in arch.graph_spec("full").weights))
    return out


def nnls_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights w minimising the squared relative error of ``x @ w`` against `y`."""
    from scipy.optimize import nnls  # here, not at the top: see "Measuring children" in benchmarks/__init__.py

    scale = np.maximum(np.abs(x).max(axis=0), 1e-30)  # columns of bytes and of counts on one footing
    w, _ = nnls(x / scale / y[:, None], np.ones(len(y)))
    return w / scale


def loo_predictions(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's prediction by the fit on every other row."""
    keep = np.ones(len(y), bool)
    out = np.empty(len(y))
    for i in range(len(y)):
        keep[i] = False
        out[i] = x[i] @ nnls_fit(x[keep], y[keep])
        keep[i] = True
    return out


def fit_quality(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Median and worst |predicted / measured - 1|, and Spearman."""
    errors = np.abs(predicted / measured - 1)
    return {"median": float(np.median(errors)), "worst": float(np.max(errors)),
            "spearman": spearman(list(predicted), list(measured))}


def fits(x_all: dict[str, np.ndarray], load: np.ndarray, run: np.ndarray) -> dict[str, dict[str, float]]:
    """Leave-one-out fits of the peak (max of the two phases), per feature set of `x_all`: directly, and as the
    larger of a load model and a run model fitted apart ("two-phase")."""
    peak = np.maximum(load, run)
    out = {}
    for name, x in x_all.items():
        out[name] = fit_quality(loo_predictions(x, peak), peak)
        out[f"{name}, two-phase"] = fit_quality(np.maximum(loo_predictions(x, load), loo_predictions(x, run)), peak)
    return out


# ----------------------------------------------------------------------------- the run

BEST_SET = "graph + largest weight"
FIT_SETS = {"graph": FIT_FEATURES, BEST_SET: (*FIT_FEATURES, "largest_weight_bytes")}  # feature sets, by name
SIMPLE_FIT, BEST_FIT = "graph", f"{BEST_SET}, two-phase"  # the fits the options table shows (median/worst/Spearman)
DEFAULT_OPTIONS = ("default", "no_arena", "same_as_requested", "no_mem_pattern", "no_prepack", "fixed_mmap",
                   "no_arena+fixed_mmap")
HISTORY_OPTIONS = ("default", "fixed_mmap")


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every measurement: one record per architecture, sequence length, option and repeat."""
    target = CPUTarget(threads=args.threads)
    archs = held_out(args.default, args.per_layer, args.seed)
    short = [a for space in ("default", "per-layer") for a in [x for x in archs if x[0] == space][:args.short]]
    plan = [(space, a, args.seq_len) for space, a in archs] + [(space, a, args.short_seq_len) for space, a in short]
    repeated = {a.archid for _, a in archs[:args.repeat_archs]}
    records = []
    with scratch_folders(max(4 * int(features(a, s)["weight_bytes"]) for _, a, s in plan)) as scratch:
        for i, (space, arch, seq_len) in enumerate(plan):
            again = arch.archid in repeated and seq_len == args.seq_len
            history = set(args.options if again else args.history_options if seq_len == args.seq_len else ())
            t0 = time.perf_counter()
            got = measure_arch(arch, seq_len, args.options, args.repeats if again else 1, history, args, target,
                               scratch)
            for option, runs in got.items():
                records += [{"space": space, "arch": to_record(arch), "seq_len": seq_len, "option": option,
                             "repeat": r, **m} for r, m in enumerate(runs)]
            if again:  # what the search itself measures, beside
                records.append({"space": space, "arch": to_record(arch), "seq_len": seq_len, "option": "probe",
                                "repeat": 0, "peak": probe_peak(arch, seq_len, target, args.timeout)})
            print(f"[{i + 1}/{len(plan)}] {space} {arch.archid} seq {seq_len}: "
                  + ", ".join(f"{o} {max(runs[0]['load'], runs[0]['run']) / MIB:.0f}" for o, runs in got.items())
                  + f" MiB ({time.perf_counter() - t0:.0f} s)", flush=True)
    return records


def _graph_key(record: dict[str, Any]) -> tuple[str, int]:
    return json.dumps(record["arch"], sort_keys=True), record["seq_len"]


def _formula(x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> str:
    """The fit on every row, as a formula of the features (bytes; "1" in MiB)."""
    w = nnls_fit(x, y)
    terms = [f"{c / MIB:.1f} MiB" if n == "1" else f"{c:.3g}·{n}" for c, n in zip(w, names) if c > 0]
    return " + ".join(terms) or "0"


def option_rows(records: list[dict[str, Any]], options: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per option: the phases' median peaks, which phase sets the peak, the repeats' spread and the fits (the
    "options" table, a "fits" table with every fit, a "models" table with the two-phase model fitted on every
    graph); and every fit's figures for the summary."""
    graphs = list(dict.fromkeys(_graph_key(r) for r in records if r["option"] != "probe"))
    feats = {g: features(arch_from_dict(json.loads(g[0])), g[1]) for g in graphs}
    x_all = {name: np.array([[feats[g][f] for f in cols] for g in graphs]) for name, cols in FIT_SETS.items()}
    rows: list[dict[str, Any]] = []
    fit_rows, model_rows, summary = [], [], {}
    for option in options:
        first = {_graph_key(r): r for r in records if r["option"] == option and r["repeat"] == 0}
        load = np.array([first[g]["load"] for g in graphs], float)
        run = np.array([first[g]["run"] for g in graphs], float)
        quality = fits(x_all, load, run)
        fresh, history, changed = _spread(records, option)
        rows.append({"table": "options", "option": option, "set-up": describe_option(OPTIONS[option]),
                     "load peak, median (MiB)": round(float(np.median(load)) / MIB, 1),
                     "run peak, median (MiB)": round(float(np.median(run)) / MIB, 1),
                     "run sets the peak": f"{int(np.sum(run > load))}/{len(graphs)}",
                     "repeats, worst spread (MiB)": round(fresh / MIB, 1),
                     "after a freed 16 MiB block: worst change (MiB)": round(history / MIB, 1),
                     "after a freed 16 MiB block: graphs changed > 1 MiB": changed,
                     **{f"fit: {name}": _quality_text(quality[name]) for name in (SIMPLE_FIT, BEST_FIT)}})
        fit_rows += [{"table": "fits (leave-one-out)", "option": option, "fit": name,
                      "median |error|": f"{q['median']:.1%}", "worst |error|": f"{q['worst']:.1%}",
                      "Spearman": round(q["spearman"], 4)} for name, q in quality.items()]
        cols = FIT_SETS[BEST_SET]
        model_rows.append({"table": "models (fitted on every graph)", "option": option,
                           "load": _formula(x_all[BEST_SET], load, cols), "run": _formula(x_all[BEST_SET], run, cols)})
        summary[option] = quality
    return rows + fit_rows + model_rows, summary


def _quality_text(q: dict[str, float]) -> str:
    return f"{q['median']:.1%} / {q['worst']:.1%} / {q['spearman']:.3f}"


def _spread(records: list[dict[str, Any]], option: str) -> tuple[float, float, str]:
    """The largest difference between fresh repeats of one graph's peak (bytes), the largest change of a peak
    measured after a freed block from the first (bytes), and "changed/measured" such graphs (more than 1 MiB)."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        if r["option"] == option:
            runs.setdefault(_graph_key(r), []).append(r)
    fresh, history, changed, measured = 0.0, 0.0, 0, 0
    for rs in runs.values():
        peaks = [max(r["load"], r["run"]) for r in rs if not r["history"]]
        fresh = max(fresh, max(peaks) - min(peaks))
        for r in rs:
            if r["history"]:
                change = abs(max(r["load"], r["run"]) - peaks[0])
                history, changed, measured = max(history, change), changed + (change > MIB), measured + 1
    return fresh, history, f"{changed}/{measured}"


def arch_rows(records: list[dict[str, Any]], options: list[str]) -> list[dict[str, Any]]:
    """Per architecture and sequence length: every option's peak (first repeat), and the probe's where taken."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        g = _graph_key(r)
        if g not in rows:
            arch = arch_from_dict(r["arch"])
            rows[g] = {"table": "architectures", "space": r["space"], "n_layer": arch.n_layer, "n_embd": arch.n_embd,
                       "n_inner": arch.describe("n_inner"), "n_head": arch.describe("n_head"), "seq_len": r["seq_len"],
                       "weights (MiB)": round(features(arch, r["seq_len"])["weight_bytes"] / MIB, 1),
                       "probe (MiB)": None}
        if r["option"] == "probe":
            rows[g]["probe (MiB)"] = round(r["peak"] / MIB, 1)
        elif r["repeat"] == 0:
            rows[g][f"{r['option']} load/run (MiB)"] = f"{r['load'] / MIB:.0f} / {r['run'] / MIB:.0f}"
    return [rows[g] for g in rows if all(f"{o} load/run (MiB)" in rows[g] for o in options)]


def repeat_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The repeated graphs: each option's load and run peaks, every repeat."""
    groups: dict[tuple[tuple[str, int], str], list[dict[str, Any]]] = {}
    for r in records:
        if r["option"] != "probe":
            groups.setdefault((_graph_key(r), r["option"]), []).append(r)
    rows = []
    for (g, option), runs in groups.items():
        if len(runs) > 1:
            arch = arch_from_dict(json.loads(g[0]))
            rows.append({"table": "repeats (the last after a freed 16 MiB block)",
                         "architecture": f"{arch.n_layer}x{arch.n_embd}, n_inner {arch.describe('n_inner')}, "
                                         f"n_head {arch.describe('n_head')}", "seq_len": g[1], "option": option,
                         "load (MiB)": ", ".join(f"{r['load'] / MIB:.1f}" for r in runs),
                         "run (MiB)": ", ".join(f"{r['run'] / MIB:.1f}" for r in runs)})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--default", type=int, default=30, help="architectures from the default space (%(default)s)")
    p.add_argument("--per-layer", type=int, default=10, help="architectures from the per-layer space (%(default)s)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per forward (default %(default)s)")
    p.add_argument("--short", type=int, default=3, help="architectures of each space measured again at "
                                                        "--short-seq-len (default %(default)s)")
    p.add_argument("--short-seq-len", type=int, default=256, help="(default %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="fresh measurements of each repeated graph, and one more "
                                                          "after a freed 16 MiB block (default %(default)s)")
    p.add_argument("--repeat-archs", type=int, default=2, help="architectures measured --repeats times per option, "
                                                               "the first drawn (default %(default)s)")
    p.add_argument("--options", default=",".join(DEFAULT_OPTIONS),
                   help=f"option sets, comma-separated, of: {', '.join(OPTIONS)} (default %(default)s)")
    p.add_argument("--history-options", default=",".join(HISTORY_OPTIONS),
                   help="option sets measured once more on every graph at --seq-len, in a child that first freed a "
                        "16 MiB block (default %(default)s)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement (default %(default)s)")
    add_threads_flag(p, "ONNX Runtime intra-op threads")
    add_json_flag(p, "memory_options")
    args = p.parse_args(argv)
    args.options = [o.strip() for o in args.options.split(",") if o.strip()]
    args.history_options = [o.strip() for o in args.history_options.split(",") if o.strip() in args.options]
    unknown = [o for o in args.options if o not in OPTIONS]
    counts = ("default", "per_layer", "short", "repeat_archs")
    bad = [n for n in (*counts, "seq_len", "short_seq_len", "repeats", "threads")
           if getattr(args, n) < (0 if n in counts else 1)]
    if unknown or not args.options or bad or args.default + args.per_layer < 3:
        p.exit(2, f"{p.prog}: error: {_bad_input(unknown, bad)}\n")
    return args


def _bad_input(unknown: list[str], bad: list[str]) -> str:
    if unknown:
        return f"unknown option set(s) {', '.join(unknown)} (known: {', '.join(OPTIONS)})"
    if bad:
        return f"--{bad[0].replace('_', '-')} out of range"
    return "need at least 3 architectures and at least one option set"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    records = measure(args)
    options, fitted = option_rows(records, args.options)
    rows = options + repeat_rows(records) + arch_rows(records, args.options)
    table = [r for r in options if r["table"] == "options"]
    print_table(list(table[0])[1:], [list(r.values())[1:] for r in table])
    write_result("memory_options", conditions={
        "architectures": f"{args.default} from the default space + {args.per_layer} from the LTS paper's per-layer "
                         f"space (configs/search-lts-paper.yaml), uniform, seed {args.seed}; the first {args.short} "
                         f"of each again at seq_len {args.short_seq_len}",
        "seq_len": args.seq_len, "batch": 1, "precision": "fp32",
        "peak": "VmHWM - RSS before the session, in a fresh child per measurement (as the memory probe); load = "
                "InferenceSession(path), run = the first forward, each its own window over that baseline",
        "fit": "non-negative least squares on the relative error, leave-one-out over every graph; two-phase = the "
               "larger of a load model and a run model fitted apart",
        "features": "lts.cost.features.arch_features: " + ", ".join(FIT_FEATURES)
                    + "; largest_weight_bytes = the largest single weight",
        "repeats": f"the first {args.repeat_archs} architectures, {args.repeats} times per option, each in a fresh "
                   f"child, then once more after a 16 MiB block was allocated and freed in that child (a process "
                   f"with a history, as glibc's dynamic mmap threshold sees it); beside them, lts's own memory probe "
                   f"(probe column)",
        "history": f"{', '.join(args.history_options)}: every graph at seq_len {args.seq_len} measured once more "
                   f"after a freed 16 MiB block",
        "fit columns": "median |error| / worst |error| / Spearman"},
        rows=rows, summary={f"{option}: {BEST_FIT}": _quality_text(q[BEST_FIT]) for option, q in fitted.items()},
        threads=args.threads, path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
