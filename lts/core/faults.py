"""Fault injection for the fault suite: make this process die, hang or raise at a named point.

Real faults (a SIGKILL while the checkpoint is being written, a measuring process that hangs)
cannot be timed from outside reliably; the suite sets ``LTS_FAULT`` instead and the code fails
exactly there, for real. Without the variable, :func:`point` is a dictionary lookup.

``LTS_FAULT`` holds comma-separated rules ``point:action[@n][:regex]``:

- ``point``: a name passed to :func:`point` (``evaluated``, ``checkpoint``, ``models``,
  ``measure``, ``evaluate``);
- ``action``: ``kill`` (SIGKILL this process), ``hang`` (sleep for an hour), ``raise``
  (RuntimeError), ``exit`` (``os._exit(3)``, no cleanup);
- ``@n``: fire only at the n-th time this process reaches the point (default: every time);
- ``regex``: fire only when it matches the start of the point's key (e.g. an archid).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter

ENV = "LTS_FAULT"
ACTIONS = ("kill", "hang", "raise", "exit")
_seen: Counter[str] = Counter()


def _rules(spec: str) -> list[tuple[str, str, int | None, str | None]]:
    rules = []
    for rule in filter(None, (r.strip() for r in spec.split(","))):
        name, _, rest = rule.partition(":")
        action, _, pattern = rest.partition(":")
        action, _, nth = action.partition("@")
        if action not in ACTIONS:
            raise ValueError(f"{ENV}: unknown action {action!r} in {rule!r} (choose from {', '.join(ACTIONS)})")
        rules.append((name, action, int(nth) if nth else None, pattern or None))
    return rules


def point(name: str, key: str = "") -> None:
    """Fail here if ``LTS_FAULT`` asks for it (see the module docstring); otherwise return at once."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    _seen[name] += 1
    for rule, action, nth, pattern in _rules(spec):
        if rule != name or (nth is not None and _seen[name] != nth) or (pattern and not re.match(pattern, key)):
            continue
        if action == "kill":
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
            time.sleep(10)  # the signal is delivered before this returns
        elif action == "hang":
            time.sleep(3600)
        elif action == "exit":
            os._exit(3)
        raise RuntimeError(f"injected fault at {name}")
