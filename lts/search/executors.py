"""Where evaluations run: this machine (sequential or a thread pool over child processes) or Ray.

The one place that decides how many evaluations are in flight. Measurements themselves always
happen in a child process (``lts.cost.measure``, through ``lts.core.procs``), and timing is
serialised per machine by the Target's lock, so on one machine ``workers > 1`` overlaps only
the non-timed work (graph writing, memory phases).
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Iterator, Protocol, Sequence, TypeVar

from lts.core.errors import LTSError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items``, yielding ``(index, result)`` as each finishes; ``close`` frees its resources."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs `fn` on this machine; results are yielded as each finishes, with their index."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise LTSError(f"--workers must be >= 1, got {workers}")
        self.workers = workers

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


class RayExecutor:
    """Runs `fn` as Ray tasks (one CPU-exclusive task per candidate) on a Ray cluster.

    ``address=None`` starts or joins a local Ray; ``"auto"`` joins the running cluster.
    Install with ``pip install -e .[distributed]``.
    """

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise LTSError("the ray engine needs Ray: pip install -e '.[distributed]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     **({"num_cpus": workers} if workers and address is None else {}))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        remote = self.ray.remote(num_cpus=1)(lambda f, x: f(x))
        refs = {remote.remote(fn, item): i for i, item in enumerate(items)}
        while refs:
            done, _ = self.ray.wait(list(refs), num_returns=1)
            for ref in done:
                yield refs.pop(ref), self.ray.get(ref)

    def close(self) -> None:
        self.ray.shutdown()


def make_executor(engine: str, workers: int, address: str | None = None) -> Executor:
    if engine == "local":
        return LocalExecutor(workers)
    if engine == "ray":
        return RayExecutor(address, workers)
    raise LTSError(f"unknown engine {engine!r} (choose local or ray)")
