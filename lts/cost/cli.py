"""``lts evaluate``: score one architecture (a config.json, or a folder holding one) as a search would.

    lts evaluate models/<archid>
    lts evaluate config.json --latency-mode full --json

Prints every registered objective with its unit, how long it took and the conditions it was measured under.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from lts.core.cli import ArgumentParser
from lts.core.errors import LTSError
from lts.core.fileio import nan_to_none
from lts.core.settings import Boolean, Optional, Settings, Text, borrow, declared_default, setting
from lts.cost.evaluator import EvalSettings
from lts.cost.settings import MeasureSettings
from lts.cost.target import TargetSettings

DESCRIPTION = "Measure one architecture (a config.json or models/<archid>): every registered objective."


@dataclass(frozen=True)
class EvaluateSettings(Settings):
    """The settings of ``lts evaluate`` (those MeasureSettings, TargetSettings and EvalSettings declare: borrowed)."""

    model: str = setting(help="config.json, or a folder holding one (e.g. models/<archid>)", check=Text(nonempty=True),
                         flag="model", metavar="CONFIG")
    seq_len: int = borrow(MeasureSettings, "seq_len")
    context: int | None = borrow(
        MeasureSettings, "context", default=None, optional=True,
        help=f"KV-cache tokens of the timed decoding step; generation memory decodes up to it (none: "
             f"{declared_default(MeasureSettings, 'context')}, or the model's longest sequence when shorter)")
    generation: bool = setting(True, "skip the generation graph (decode latency, generation memory)", Boolean(),
                               flag="--no-generation")
    threads: int | None = borrow(TargetSettings, "threads")
    target: str = borrow(TargetSettings, "target")
    precision: str = borrow(TargetSettings, "precision")
    latency_mode: str = borrow(EvalSettings, "latency_mode")
    timeout_s: float = borrow(MeasureSettings, "timeout_s")
    cache: str | None = setting(None, "SQLite cache (none: evaluations.sqlite in $LTS_CACHE_DIR, else "
                                      "$XDG_CACHE_HOME/lts, else ~/.cache/lts)", Optional(Text(nonempty=True)))
    store: bool = setting(True, "measure afresh and store nothing", Boolean(), flag="--no-cache")
    json: bool = setting(False, "print JSON", Boolean())


SETTINGS = EvaluateSettings  # every setting, declared once (lts.core.settings)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Evaluate the architecture named in `argv`; exit status 1 when its measurement failed."""
    p = ArgumentParser(prog=prog or "lts evaluate", description=DESCRIPTION, settings=EvaluateSettings,
                       preset="evaluate")
    args: EvaluateSettings = p.settings_from(p.parse_args(argv))
    return evaluate(args)


def _composed(evaluator: Any, settings: EvalSettings, config: Any) -> tuple[dict[str, float], str]:
    """(what a search with costs predicted would use for `config`'s whole-measured objectives, by name; or why it
    cannot be given without measuring more)."""
    from lts.cost.evaluator import Evaluator, whole_objectives

    if settings.latency_mode == "full":
        return {}, ""
    predicting = replace(settings, costs="predicted")
    guess = Evaluator(predicting, store=evaluator.cache, calibration_s=evaluator.calibration_s,
                      hardware=evaluator.hardware).without_measuring(config)
    given = {} if guess is None or not guess.ok else \
        {n: guess[n] for n in whole_objectives(predicting) if not math.isnan(guess[n])}
    if not given:
        return {}, ("not available: the cache holds neither this architecture's part timings nor enough measured "
                    "to predict them (a search on this machine fills it)")
    return given, ""


def evaluate(args: EvaluateSettings) -> int:
    from lts.cost import probes
    from lts.cost.evaluator import Evaluator
    from lts.cost.objectives import REGISTRY
    from lts.cost.store import default_cache_path
    from lts.families import load_arch, to_record

    config = load_arch(args.model)
    context = args.context
    if context is None:
        context = min(declared_default(MeasureSettings, "context"), config.max_positions)
    # Every registered objective (--no-generation: those measured on the generation graph left out).
    wanted = [name for name, o in REGISTRY.items()
              if args.generation or o.probe is None or probes.get(o.probe).graph != "kv"]
    target = TargetSettings(args.target, args.threads, args.precision).make()
    settings = EvalSettings.create(latency_mode=args.latency_mode, seq_len=args.seq_len, context=context,
                                   objectives=wanted, timeout_s=args.timeout_s, target=target)
    if settings.seq_len > config.max_positions:
        raise LTSError(f"--seq-len {settings.seq_len} exceeds the longest sequence the model takes "
                       f"({config.max_positions})")
    if settings.measure_settings.context > config.max_positions:
        raise LTSError(f"--context {settings.measure_settings.context} exceeds the longest sequence the model takes "
                       f"({config.max_positions})")
    cache = (args.cache or default_cache_path()) if args.store else None
    # The figures are the whole graph's, measured once; what a search would use instead (composed from part
    # timings the store holds, or predicted by the models fitted on them) is shown beside them where the store
    # can serve it without measuring anything more.
    # Its own calibration: the reference timed beside the whole graph (one architecture, one moment: no separate
    # calibration to wait for; its latency is the median as timed).
    evaluator = Evaluator(replace(settings, latency_mode="full"), cache, own_calibration=True)
    result = evaluator.evaluate(config)
    composed, unavailable = _composed(evaluator, settings, config) if result.ok else ({}, "")
    if args.json:
        out = {"archid": result.archid, "config": to_record(config), **result.objectives(), "cached": result.cached,
               **({"composed": composed} if composed else {}),
               **({"composed_unavailable": unavailable} if unavailable else {}), "conditions": evaluator.conditions()}
        print(json.dumps(nan_to_none(out), indent=2))
        return 0 if result.ok else 1
    c = evaluator.conditions()
    width = max(len(name) for name in [*REGISTRY, "eval_seconds"]) + 2
    print(f"{'archid':<{width}}{result.archid}")
    fields = {**config.columns(), "vocab_size": config.vocab_size, "positions": config.max_positions}
    print(f"{'config':<{width}}" + " ".join(f"{k}={v}" for k, v in fields.items()))
    for name, objective in REGISTRY.items():
        shown = objective.display(result[name])
        unit = "" if objective.integer else (objective.display_unit or objective.unit)
        also = f"  (composed or predicted: {objective.display(composed[name])})" if name in composed else ""
        print(f"{name:<{width}}{shown or 'n/a'}{'  ' + unit if unit and shown else ''}{also}")
    print(f"{'eval_seconds':<{width}}{result.eval_seconds:.2f}" + ("  (from cache)" if result.cached else ""))
    print(f"{'status':<{width}}{result.status}")
    if unavailable:
        print(f"{'composed':<{width}}{unavailable}")
    context_text = f", context {c['context']}" if "context" in c else ""
    print(f"{'conditions':<{width}}batch 1, seq_len {c['seq_len']}{context_text}, latency {c['latency_mode']}, "
          f"{c['describe']}, hardware {c['hardware']['id']}")
    return 0 if result.ok else 1

