"""An ONNX graph measured in a fresh process, the way benchmarks/evaluators.py checks LTS's own figures against.

    python -m benchmarks._onnx_child memory PATH SEQ_LEN THREADS REPEATS   # driven over stdin/stdout
    python -m benchmarks._onnx_child paired PATHS_JSON SEQ_LEN THREADS ROUNDS

``memory``: prints ``ready <RSS bytes>`` and waits for a line on stdin; makes a session (LTS's session set-up,
``CPUTarget.session``) and runs one forward, prints ``mem_done`` (the parent samples the RSS from outside
meanwhile) and waits again; then a second warm-up run and `REPEATS` timed runs: one JSON line
``{"median_s", "cv"}``. ``paired``: the graphs of ``{name: path}`` loaded in this one process and run
round-robin (2 warm-up rounds, then `ROUNDS`), so a slow drift of the machine hits all alike: one JSON line
``{name: median s}``. Only numpy, onnxruntime and two small lts modules are imported: what the process holds
before the session is its baseline.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from lts.cost.feeds import feeds_for
from lts.cost.target import CPUTarget

VOCAB = 50257  # the token ids' range when the graph's logits do not say theirs


def rss() -> int:
    """This process's resident set size in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory(path: str, seq_len: int, threads: int, repeats: int) -> None:
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(1, seq_len), dtype=np.int64)
    print("ready", rss(), flush=True)
    sys.stdin.readline()
    sess = CPUTarget(threads=threads).session(path)  # the session set-up LTS measures with
    vocab = sess.get_outputs()[0].shape[-1]
    ids = ids % (vocab if isinstance(vocab, int) else VOCAB)
    sess.run(None, {"input_ids": ids})
    print("mem_done", flush=True)
    sys.stdin.readline()
    sess.run(None, {"input_ids": ids})  # second warm-up run
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"input_ids": ids})
        times.append(time.perf_counter() - t0)
    a = np.asarray(times)
    print(json.dumps({"median_s": float(np.median(a)), "cv": float(a.std(ddof=1) / a.mean())}), flush=True)


def paired(paths: dict[str, str], seq_len: int, threads: int, rounds: int) -> None:
    target = CPUTarget(threads=threads)
    sess = {k: target.session(p) for k, p in paths.items()}
    feeds = {k: feeds_for(s, seq_len) for k, s in sess.items()}
    for _ in range(2):
        for k in sess:
            sess[k].run(None, feeds[k])
    times: dict[str, list[float]] = {k: [] for k in sess}
    for _ in range(rounds):  # interleaved: slow drift of the machine hits every graph alike
        for k in sess:
            time.sleep(0.05)  # let the previous session's spinning pool threads go idle first
            t0 = time.perf_counter()
            sess[k].run(None, feeds[k])
            times[k].append(time.perf_counter() - t0)
    print(json.dumps({k: float(np.median(v)) for k, v in times.items()}))


def main(argv: list[str]) -> int:
    mode, what, seq_len, threads, count = argv
    if mode == "memory":
        memory(what, int(seq_len), int(threads), int(count))
    else:
        paired(json.loads(what), int(seq_len), int(threads), int(count))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
