"""How a session is timed: repeats until the median is stable, in rounds beside a fixed reference graph.

Latency: warm-up runs, then timed runs until the median is stable (standard error of the
median <= ``rel_err`` of it), between ``min_repeats`` and ``max_repeats``; the coefficient
of variation is recorded. A fixed reference graph (``REFERENCE``) is timed around the timed one,
in rounds (``time_beside_reference``), and the reference latency is kept beside it: the machine's
speed drifts between moments (tens of percent on a shared VM), the ratio much less, and the
ratio's spread between rounds is recorded as the timing's ``drift``. The caller holds the Target's
exclusive lock meanwhile (``ProbeContext.time``): two searches on one machine never time at the same
moment.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from lts.cost.feeds import feeds_for
from lts.cost.probes import Timing
from lts.cost.scratch import write_graph
from lts.cost.settings import MeasureSettings
from lts.cost.target import Target
from lts.families import arch_from_dict

# The reference graph timed beside every measurement: one small GPT-2 block of the default space,
# at the measurement's seq_len. Its latency tracks the machine's speed at that moment (frequency,
# neighbours on a VM, thermal state), so a latency divided by it means the same thing whenever
# it was taken. Its config is part of every evaluation's cache key (lts.core.cachekeys).
REFERENCE = arch_from_dict({"n_layer": 1, "n_embd": 256, "n_inner": 1024, "n_head": 4, "vocab_size": 512,
                            "n_positions": 4096}, source="the reference graph")  # GPT-2 (no family: the default)

CALIBRATION_LOOPS, CALIBRATION_GAP_S = 5, 0.5  # a run's calibration: the median of 5 loops 0.5 s apart
SPIN_PAUSE_S = 0.05  # after a loop of the timed (spinning) session: its threads go to sleep meanwhile
# Warm-up runs stop once they took this long (at least one on a session's first loop): a graph of a second is warm
# after one run, and a later loop's pool wakes in microseconds, nothing beside a run of more than this.
WARM_S = 0.1
ROUNDS = 3  # a timed graph is sampled in this many rounds, each between two timings of the reference


def reference_session(scratch: list[str], settings: MeasureSettings, target: Target,
                      weights: Any) -> tuple[Any, dict]:
    """The reference graph's session (written to `scratch`, the file gone after) and its feeds at ``seq_len``."""
    path, _ = write_graph(scratch, "reference.onnx", REFERENCE, "block", weights)
    sess = target.session(path, spin=False)  # its threads sleep after its loop: they never slow the timed graph
    path.unlink()
    return sess, feeds_for(sess, settings.seq_len)


def time_session(sess: Any, feeds: dict[str, np.ndarray], s: MeasureSettings, warm: float = 0.0) -> Timing:
    """Warm up, then repeat until the median is stable (or the repeat/time budget is spent).

    Up to ``warmup`` warm-up runs, stopping once they took ``WARM_S`` (none when the session's last run, `warm`
    seconds, took that long already). At least ``min_repeats`` runs and ``min_seconds`` of them: a graph of a
    few milliseconds (a decoding step) needs many runs before its thread pool is awake and its median means
    anything; but once ``max_seconds`` passed, one run is enough (a run that long averages its own noise). Then
    until the median's standard error is within ``rel_err``, ``max_repeats`` runs were made or ``max_seconds``
    passed.
    """
    warmed = 0.0
    for _ in range(s.warmup):
        if max(warmed, warm) >= WARM_S:
            break
        t0 = time.perf_counter()
        sess.run(None, feeds)
        warmed += time.perf_counter() - t0
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if elapsed > s.max_seconds:
            break
        if len(times) < s.min_repeats or elapsed < s.min_seconds:
            continue
        if len(times) >= s.max_repeats:
            break
        if len(times) < 2:  # no spread to read yet
            continue
        arr = np.asarray(times)
        # Standard error of the median ~ 1.2533 * sigma / sqrt(n) for near-normal noise.
        if 1.2533 * float(arr.std(ddof=1)) / math.sqrt(len(arr)) <= s.rel_err * float(np.median(arr)):
            break
    arr = np.asarray(times)
    med = float(np.median(arr))
    cv = float(arr.std(ddof=1) / arr.mean()) if len(arr) > 1 else 0.0
    return Timing(median_s=med, cv=cv, repeats=len(arr))


def time_beside_reference(sess: Any, feeds: dict[str, np.ndarray], s: MeasureSettings,
                          reference: tuple[Any, dict[str, np.ndarray]], warm: float = 0.0) -> Timing:
    """Time `sess` in ``ROUNDS`` rounds, each between two timings of the reference graph.

    The machine's speed moves within seconds on a shared VM (tens of percent), so one sandwich
    can catch a slowdown on one side only. Each round gives the ratio part / reference (the mean of
    the reference timings either side); the Timing keeps the median round's ratio (``median_s /
    reference_s``) and, as ``drift``, the spread of the ratio between rounds: how far the
    reference-relative figure moves between moments, which the spread within one loop of runs
    (``cv``) does not see. The same repeat budget as one loop, split over the rounds.

    Loops, not runs interleaved one by one: ONNX Runtime's per-session thread pools keep spinning
    for tens of milliseconds after a run, so a run right after another session's measures their
    contention (2-3x for a decoding step on 2 cores). So the reference session does not spin
    (``Target.session(spin=False)``), and the timed session's loop is followed by a pause of
    ``SPIN_PAUSE_S`` before the reference runs again; each loop starts with warm-up runs, unless its runs are
    long enough to need none (``time_session``; `warm`: how long the session's last run before took).
    """
    per_round = replace(s, min_repeats=-(-s.min_repeats // ROUNDS), max_repeats=-(-s.max_repeats // ROUNDS),
                        min_seconds=s.min_seconds / ROUNDS, max_seconds=s.max_seconds / ROUNDS)
    refs = [time_session(*reference, per_round)]
    parts: list[Timing] = []
    for _ in range(ROUNDS):
        parts.append(time_session(sess, feeds, per_round, warm=parts[-1].median_s if parts else warm))
        time.sleep(SPIN_PAUSE_S)  # the timed session's threads spin on after its loop: let them stop
        refs.append(time_session(*reference, per_round))
    ratios = [p.median_s / ((a.median_s + b.median_s) / 2) for p, a, b in zip(parts, refs, refs[1:])]
    median_s = float(np.median([p.median_s for p in parts]))
    ratio = float(np.median(ratios))
    logs = np.log(ratios)
    # Pooled spread within loops: each run's deviation from its own round's mean, relative.
    n = sum(p.repeats for p in parts)
    cv = math.sqrt(sum((p.cv ** 2) * max(0, p.repeats - 1) for p in parts) / max(1, n - len(parts)))
    return Timing(median_s=median_s, cv=cv, repeats=n, reference_s=median_s / ratio,
                  drift=float(logs.std(ddof=1)) if len(logs) > 1 else 0.0)


def calibration(sess: Any, feeds: dict[str, np.ndarray], s: MeasureSettings, target: Target) -> Timing:
    """A run's calibration: the median of ``CALIBRATION_LOOPS`` loops of the reference session, spread over a few
    seconds (one loop can hit a passing slowdown), each under the Target's exclusive lock."""
    loops = []
    for i in range(CALIBRATION_LOOPS):
        if i:
            time.sleep(CALIBRATION_GAP_S)
        with target.lock(exclusive=True):
            loops.append(time_session(sess, feeds, s))
    return sorted(loops, key=lambda t: t.median_s)[len(loops) // 2]
