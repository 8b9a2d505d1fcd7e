"""Fault injection for the fault suite: make this process die, hang or raise at a named point.

Real faults (a SIGKILL while the checkpoint is being written, a measuring process that hangs)
cannot be timed from outside reliably; the suite sets ``LTS_FAULT`` instead and the code fails
exactly there, for real. Without the variable, :func:`point` is a dictionary lookup.

``LTS_FAULT`` holds comma-separated rules ``point:action[@n][:regex]``:

- ``point``: a name passed to :func:`point` (``evaluated``, ``checkpoint``, ``front``, ``models``,
  ``measure``, ``evaluate``);
- ``action``: ``kill`` (SIGKILL this process), ``hang`` (sleep for an hour), ``raise``
  (RuntimeError), ``exit`` (``os._exit(3)``, no cleanup), ``sync`` (a barrier between processes:
  leave a file named by this pid in the folder ``$LTS_FAULT_SYNC`` and wait until it holds
  ``$LTS_FAULT_SYNC_N`` files; how a test makes two searches truly concurrent at a point);
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
ACTIONS = ("kill", "hang", "raise", "exit", "sync")
SYNC_TIMEOUT_S = 300  # a barrier nobody else reaches is a test bug: fail rather than wait for ever
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
        elif action == "sync":
            _barrier(name)
            continue
        raise RuntimeError(f"injected fault at {name}")


def _barrier(name: str) -> None:
    folder, parties = os.environ[f"{ENV}_SYNC"], int(os.environ[f"{ENV}_SYNC_N"])
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    while len(os.listdir(folder)) < parties:
        if time.monotonic() > deadline:
            raise RuntimeError(f"barrier at {name}: {len(os.listdir(folder))} of {parties} processes arrived")
        time.sleep(0.02)
