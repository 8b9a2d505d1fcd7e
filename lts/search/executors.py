"""Where evaluations run: this machine (sequential or a thread pool over child processes) or a Ray cluster.

The one place that decides how many evaluations are in flight, and where. Both engines keep one
contract: ``evaluate(evaluator, configs)`` yields ``(index, EvalResult)`` as each finishes, and
only the driver (this process) touches the store, the run folder and the checkpoint.

On this machine measurements happen in a child process (``lts.cost.measure``, through
``lts.core.procs``) and timing is serialised by the Target's machine-wide lock, so
``workers > 1`` overlaps only the untimed work (graph writing, memory phases).

On Ray (:class:`RayExecutor`), the driver splits each evaluation
(:meth:`lts.cost.evaluator.Evaluator.task`, :func:`lts.cost.evaluator.run_task`,
:meth:`~lts.cost.evaluator.Evaluator.finish`): cache lookups and stores stay here, the
measurement runs on a node. Which nodes measure: those whose Target fingerprint (CPU model,
cores, OS, ONNX Runtime version) is the search's; figures from other hardware never enter the
front. Each such node runs one measuring task at a time, asking Ray for as many CPUs as the
Target uses threads; unmeasured work (proxy, graph size) runs one CPU per task, everywhere at
once. A task lost with its worker or node is tried again on another node, at most ``RETRIES``
times, then recorded as failed with the reason.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence, TypeVar

from lts.core.errors import LTSError

if TYPE_CHECKING:
    from lts.cost.evaluator import EvalResult, EvalSettings, Evaluator
    from lts.cost.objectives import Timing
    from lts.cost.settings import MeasureSettings
    from lts.cost.target import Target
    from lts.families import Arch

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

RAY_INSTALL = "pip install 'ray>=2.9' (or: pip install -e '.[distributed]')"
CONNECT_TIMEOUT_S = 5.0   # a TCP connect to --ray-address
JOIN_TIMEOUT_S = 12.0     # a throw-away process joining the cluster (importing ray takes a second or two)


class Executor(Protocol):
    """Evaluates candidates, yielding ``(index, result)`` as each finishes; ``close`` frees its resources.

    The contract (tested for every engine by :mod:`lts.testing.executor`):

    - ``prepare(settings)`` comes first; ``describe()`` is one line, after it.
    - ``evaluate(evaluator, configs)`` yields exactly one ``(i, result)`` per position ``i`` of
      `configs` (duplicates included; none for an empty list), ``result`` being ``configs[i]``'s.
      Order: as each finishes, not the order of `configs` (only a one-at-a-time engine keeps
      that): callers go by the index.
    - Values are what ``evaluator.compute(configs[i])`` gives here: an engine moves the work,
      never changes a value.
    - ``evaluate`` does not raise for a candidate's failure: an exception in its task (where the
      task runs) or while preparing the task on the driver (:meth:`Evaluator.task
      <lts.cost.evaluator.Evaluator.task>`, e.g. the reference graph cannot be timed) is a failed
      result at its index, ``status`` ``"failed: <reason>"``; the other candidates go on.
    - An engine whose tasks run in worker processes of their own tries a task lost with its
      worker again, a bounded number of times (a warning naming the candidate each time), then
      yields it as failed, the reason saying the worker was lost.
    - ``close()`` may be called more than once.
    """

    def prepare(self, settings: EvalSettings) -> dict[str, Any] | None:
        """Before anything is written: the hardware fingerprint results will be measured on (None: this machine's).

        A cluster that has nodes of this machine's hardware measures on those.
        """

    def time_reference(self, settings: MeasureSettings, target: Target) -> Timing:
        """The reference graph timed on that hardware (the run's calibration)."""

    def describe(self) -> str:
        """Where the evaluations ran, in one line."""

    def evaluate(self, evaluator: Evaluator, configs: Sequence[Arch]) -> Iterator[tuple[int, EvalResult]]:
        """``(index, result)`` for every position of `configs`, as each finishes (see the class docstring)."""

    def close(self) -> None:
        """Free what the engine holds (a Ray it started); again: nothing."""


class LocalExecutor:
    """Runs on this machine; results are yielded as each finishes, with their index."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise LTSError(f"--workers must be >= 1, got {workers}")
        self.workers = workers

    def prepare(self, settings: EvalSettings) -> dict[str, Any] | None:
        return None

    def time_reference(self, settings: MeasureSettings, target: Target) -> Timing:
        return _time_reference(settings, target)

    def describe(self) -> str:
        return f"local, {self.workers} worker(s)"

    def evaluate(self, evaluator: Evaluator, configs: Sequence[Arch]) -> Iterator[tuple[int, EvalResult]]:
        return self.map(evaluator.compute, configs)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if self.workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                yield i, fn(item)
            return
        with ThreadPoolExecutor(self.workers) as pool:
            pending = {pool.submit(fn, item): i for i, item in enumerate(items)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------- Ray


def _node_info(target: Any) -> dict[str, Any]:
    """Run on a node: its Target fingerprint and host name."""
    return {"fingerprint": target.fingerprint(), "host": socket.gethostname()}


def _time_reference(settings: Any, target: Any) -> Any:
    from lts.cost.measure import measure_reference

    return measure_reference(settings, target)


def _check_reachable(address: str) -> None:
    """Refuse, within seconds, an address with no Ray cluster behind it (ray.init itself retries for long,
    printing a line a second). First a TCP connect; then a real join in a throw-away process, whose output
    is kept out of the user's terminal."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise LTSError(f"--ray-address {address}: cannot reach a Ray cluster there ({exc.strerror or exc}, "
                           f"{CONNECT_TIMEOUT_S:g} s); start one with `ray start --head` and pass the address it "
                           "prints") from None
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                               timeout=JOIN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise LTSError(f"--ray-address {address}: cannot reach a Ray cluster there (something answers, but no Ray "
                       f"cluster joined within {JOIN_TIMEOUT_S:g} s); check the address `ray start --head` "
                       "printed") from None
    if probe.returncode != 0:
        lines = [ln for ln in probe.stdout.splitlines() if ln.startswith("error: ")]
        why = lines[-1].removeprefix("error: ") if lines else f"exit status {probe.returncode}"
        raise LTSError(f"--ray-address {address}: cannot reach a Ray cluster there ({why})")


_PROBE = """
import logging, sys
import ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False, include_dashboard=False, logging_level=logging.ERROR)
except Exception as exc:
    print("error: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0])
    sys.exit(1)
ray.shutdown()
"""


class RayExecutor:
    """Evaluations as Ray tasks on a cluster: ``address=None`` starts a Ray on this machine, ``"auto"`` joins the
    running one, ``HOST:PORT`` joins that cluster. ``hardware``: the fingerprint id of the nodes that measure
    (None: this machine's when a node has it, else the cluster's only kind)."""

    RETRIES = 2

    def __init__(self, address: str | None = None, workers: int | None = None, hardware: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise LTSError(f"--engine ray needs Ray, which is not installed: {RAY_INSTALL}") from None
        self.ray, self.hardware, self.nodes, self.chosen, self.left_out = ray, hardware, [], "", 0
        self._started = False
        if address:
            _check_reachable(address)
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING,
                         **({"num_cpus": workers} if workers and address is None else {}))
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise LTSError(f"--ray-address {address}: cannot join a Ray cluster "
                               f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
                               ) from None
            self._started = True

    # ---- which nodes measure
    def _alive(self) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]

    def _on(self, node_id: str, cpus: float = 1) -> dict[str, Any]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return {"num_cpus": cpus, "max_retries": 0,
                "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)}

    def prepare(self, settings: EvalSettings) -> dict[str, Any] | None:
        """Fingerprint every node and keep those of the search's hardware; returns that fingerprint."""
        ray = self.ray
        target, measured = settings.target, settings.on_target
        probe = ray.remote(_node_info)
        nodes = self._alive()
        if not nodes:
            raise LTSError("the Ray cluster has no alive node with a CPU")
        infos = ray.get([probe.options(**self._on(n["NodeID"])).remote(target) for n in nodes], timeout=120)
        kinds: dict[str, dict[str, Any]] = {}
        for n, info in zip(nodes, infos):
            fp = info["fingerprint"]
            kind = kinds.setdefault(fp["id"], {"fingerprint": fp, "nodes": []})
            kind["nodes"].append({"id": n["NodeID"], "host": info["host"], "cpus": n["Resources"]["CPU"]})
        listing = "; ".join(f"{k} ({len(v['nodes'])} node(s): {v['fingerprint'].get('cpu') or '?'}, "
                            f"{v['fingerprint'].get('cores')} cores, {v['fingerprint'].get('system')}, onnxruntime "
                            f"{v['fingerprint'].get('onnxruntime')})" for k, v in kinds.items())
        mine = target.fingerprint()["id"]
        if self.hardware is not None:
            if self.hardware not in kinds:
                raise LTSError(f"--ray-hardware {self.hardware}: no node of the cluster has that hardware "
                               f"(the cluster has: {listing})")
            chosen = self.hardware
        elif mine in kinds:
            chosen = mine
        elif len(kinds) == 1:
            chosen = next(iter(kinds))
        else:
            raise LTSError(f"the Ray cluster mixes hardware and none is this machine's: {listing}; pick the nodes "
                           "that measure with --ray-hardware ID")
        need = target.threads if measured else 1
        usable = [n for n in kinds[chosen]["nodes"] if n["cpus"] >= need]
        if not usable:
            most = int(max(n["cpus"] for n in kinds[chosen]["nodes"]))
            raise LTSError(f"no node of hardware {chosen} has the {need} CPUs a measurement with {target.threads} "
                           f"threads asks Ray for; pass --threads {most}, or start the nodes with more --num-cpus")
        self.nodes, self.chosen, self.left_out = usable, chosen, len(nodes) - len(usable)
        return dict(kinds[chosen]["fingerprint"])

    def describe(self) -> str:
        hosts = Counter(n["host"] for n in self.nodes)
        where = ", ".join(f"{h}" + (f" x{k}" if k > 1 else "") for h, k in hosts.items())
        return (f"ray, {len(self.nodes)} node(s) of hardware {self.chosen} ({where})"
                + (f"; {self.left_out} other node(s) left out" if self.left_out else ""))

    def time_reference(self, settings: MeasureSettings, target: Target) -> Timing:
        """The reference graph timed on a node that measures (the calibration must be that hardware's)."""
        ref = self.ray.remote(_time_reference).options(**self._on(self.nodes[0]["id"], target.threads))
        return self.ray.get(ref.remote(settings, target))

    # ---- evaluating
    def evaluate(self, evaluator: Evaluator, configs: Sequence[Arch]) -> Iterator[tuple[int, EvalResult]]:
        from lts.cost.child import MeasureError
        from lts.cost.evaluator import run_task

        ray = self.ray
        measured = evaluator.settings.on_target
        remote = ray.remote(run_task)
        queue: deque[int] = deque(range(len(configs)))
        attempts: Counter[int] = Counter()
        free = [n["id"] for n in self.nodes]  # measuring nodes without a task in flight
        inflight: dict[Any, tuple[int, Any, str | None]] = {}
        cap = max(1, int(sum(n["cpus"] for n in self.nodes)))
        while queue or inflight:
            while queue and (free if measured else len(inflight) < 8 * cap):
                i = queue.popleft()
                try:
                    task = evaluator.task(configs[i])  # at dispatch: shape timings stored meanwhile are reused
                except Exception as exc:  # noqa: BLE001 - as Evaluator.compute does: this candidate fails, not the run
                    yield i, evaluator.failed(configs[i], str(exc) if isinstance(exc, (LTSError, MeasureError))
                                              else f"{type(exc).__name__}: {exc}")
                    continue
                if measured:
                    node = free.pop(0)
                    ref = remote.options(**self._on(node, evaluator.target.threads)).remote(task)
                else:
                    node, ref = None, remote.options(num_cpus=1, max_retries=0).remote(task)
                inflight[ref] = (i, task, node)
            if not inflight:  # every measuring node is gone
                for i in queue:
                    yield i, evaluator.failed(configs[i], f"no node of hardware {evaluator.hardware['id']} is left "
                                                          "in the Ray cluster")
                return
            done, _ = ray.wait(list(inflight), num_returns=1)
            rest = [r for r in inflight if r not in done]
            if rest:  # every other finished task too: one pass of the loop per batch, not per task
                done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in done:
                i, task, node = inflight.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # raised inside the task: not the node's fault
                    yield i, evaluator.failed(configs[i], f"ray task error: {_first_line(exc)}")
                except ray.exceptions.RayError as exc:  # the worker or its node died: try elsewhere
                    attempts[i] += 1
                    reason = f"{type(exc).__name__}: {_first_line(exc)}"
                    if node is not None and not any(n["NodeID"] == node for n in self._alive()):
                        self.nodes = [n for n in self.nodes if n["id"] != node]
                        node = None  # not given back to the free list
                    if attempts[i] <= self.RETRIES:
                        log.warning("%s: lost its Ray worker (%s); trying again (%d of %d)", configs[i].archid,
                                    reason, attempts[i], self.RETRIES)
                        queue.appendleft(i)
                    else:
                        yield i, evaluator.failed(configs[i], f"lost its Ray worker {attempts[i]} times (last: "
                                                              f"{reason})")
                else:
                    yield i, evaluator.finish(task, out)
                if node is not None:
                    free.append(node)

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def make_executor(engine: str, workers: int, address: str | None = None, hardware: str | None = None) -> Executor:
    if engine == "local":
        return LocalExecutor(workers)
    if engine == "ray":
        return RayExecutor(address, workers, hardware)
    raise LTSError(f"unknown engine {engine!r} (choose local or ray)")
