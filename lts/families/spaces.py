"""What every family's search space does alike: read a gene's choices from YAML, refuse unknown fields, and write
the space back as its YAML reads."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from lts.core.errors import LTSError


def choices(values: Any, name: str, kind: type = int) -> tuple:
    """A gene's choices, sorted and distinct (booleans in the order given): a list, a single value or a
    ``{start, stop, step}`` range (stop exclusive, as ``range()``); `kind` int, float or bool. LTSError naming
    ``space.<name>`` for anything else, or for a choice that is not positive."""
    if isinstance(values, Mapping):
        try:
            values = range(int(values["start"]), int(values["stop"]), int(values.get("step", 1)))
        except (KeyError, TypeError, ValueError):
            raise LTSError(f"space.{name}: a range needs integer start, stop (exclusive) and optional step") from None
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, range, tuple)):
        values = [values]
    if kind is bool:
        if not all(isinstance(v, (bool, np.bool_)) for v in values):
            raise LTSError(f"space.{name}: expected true and/or false, got {values!r}")
        out = tuple(dict.fromkeys(bool(v) for v in values))
    else:
        try:
            out = tuple(sorted({kind(v) for v in values if not isinstance(v, bool)}))
        except (TypeError, ValueError):
            raise LTSError(f"space.{name}: expected a list of numbers or a range, got {values!r}") from None
        if not out or out[0] <= 0:
            raise LTSError(f"space.{name}: needs at least one positive value, got {list(out)}")
    if not out:
        raise LTSError(f"space.{name}: needs at least one value")
    return out


def known_fields(data: Mapping[str, Any] | None, known: Sequence[str]) -> dict[str, Any]:
    """`data` as a dict, or LTSError naming its unknown fields."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise LTSError(f"unknown space field(s): {', '.join(unknown)} (known: {', '.join(known)})")
    return data


def as_yaml(space: Any) -> dict[str, Any]:
    """A space dataclass's fields as its YAML reads: an evenly spaced integer choice of three or more as
    ``{start, stop, step}``, any other choice as a list."""
    def plain(v: Any) -> Any:
        if not isinstance(v, tuple):
            return v
        steps = {b - a for a, b in zip(v, v[1:])}
        if len(v) >= 3 and len(steps) == 1 and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            step = steps.pop()
            return {"start": v[0], "stop": v[-1] + step, **({"step": step} if step != 1 else {})}
        return list(v)

    return {k: plain(v) for k, v in dataclasses.asdict(space).items()}


__all__ = ["as_yaml", "choices", "known_fields"]
