"""Where a training run computes: the device, the dtype, and its place among torchrun's processes.

One :class:`Runtime` per process. ``Runtime()`` is one process computing in fp32 on the CPU (the
loop's default, for callers that train without torchrun or a device).
:func:`resolve` builds it from the settings and the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``); :meth:`Runtime.group` joins the process group (gloo on CPU,
NCCL on CUDA) for the run's duration.

Data parallelism follows PyTorch's own recipe: DistributedDataParallel averages gradients
across ranks; rank ``r`` reads rows ``[(k * world + r) * B, (k * world + r + 1) * B)`` of the
global batch for accumulation micro-step ``k``, so the data order depends only on
``(seed, step)`` and the global batch (``B x world x grad_accum``), never on the layout.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

from lts.core.errors import LTSError

Log = Callable[[str], None]  # where a run reports progress: print, a logger, or nothing on ranks other than 0
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("fp32", "bf16", "fp16")
T = TypeVar("T")


def launch_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) in a plain ``python train.py``."""
    def read(name: str, default: int) -> int:
        value = os.environ.get(name)
        try:
            return default if value in (None, "") else int(value)
        except ValueError:
            raise LTSError(f"environment variable {name}={value!r} is not an integer (torchrun sets it)") from None
    rank, world, local = read("RANK", 0), read("WORLD_SIZE", 1), read("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise LTSError(f"RANK={rank} and WORLD_SIZE={world} do not fit (torchrun sets them)")
    return rank, world, local


def is_main_process() -> bool:
    """True unless this is a torchrun rank other than 0 (those stay quiet: rank 0 speaks for the run)."""
    return os.environ.get("RANK", "0") in ("", "0")


@dataclass
class Runtime:
    device: Any = "cpu"          # a torch.device (or its name)
    dtype: str = "fp32"
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    compile: bool = False
    scaler: Any = field(default=None, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def device_type(self) -> str:
        return self.device if isinstance(self.device, str) else self.device.type

    @property
    def backend(self) -> str:
        return "nccl" if self.device_type == "cuda" else "gloo"

    def describe(self) -> str:
        where = f"{self.device}" + (f", {self.world} processes ({self.backend})" if self.distributed else "")
        return f"{where}, {self.dtype}" + (", torch.compile" if self.compile else "")

    # ---- dtype (autocast)
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "fp32":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device_type, dtype=torch.bfloat16 if self.dtype == "bf16" else torch.float16)

    def make_scaler(self) -> Any:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        if self.dtype != "fp16":
            return None
        import torch

        self.scaler = torch.amp.GradScaler(self.device_type)
        return self.scaler

    # ---- the process group
    @contextlib.contextmanager
    def group(self) -> Iterator[Runtime]:
        if not self.distributed:
            yield self
            return
        import torch.distributed as dist

        if self.device_type == "cuda":
            import torch

            torch.cuda.set_device(self.device)
        dist.init_process_group(backend=self.backend)
        try:
            yield self
            # Every rank is done with its collectives before any tears the group down: a rank that destroys
            # its gloo pairs while a peer still talks to it can take that peer down (SIGABRT, "terminate
            # called without an active exception", seen once under load in CI). Not after an error: a rank
            # that failed must not wait for peers that may be blocked elsewhere.
            dist.barrier()
        finally:
            dist.destroy_process_group()

    def wrap(self, model: Any) -> tuple[Any, Any]:
        """(the module the loop calls, the DDP wrapper or None): DDP across ranks, then torch.compile when asked."""
        ddp = None
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ddp = model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device_type == "cuda"
                                                  else None)
        if self.compile:
            import torch

            model = torch.compile(model)
        return model, ddp

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (the values themselves in one process)."""
        if not self.distributed:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.backend == "nccl" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0, its result on every rank. An LTSError there is raised on every rank
        (so no rank waits forever for a rank that stopped)."""
        if not self.distributed:
            return make()
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.main:
            try:
                box[0] = ("ok", make())
            except LTSError as exc:
                box[0] = ("error", str(exc))
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise LTSError(value)
        return value

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def resolve(device: str, dtype: str, compile: bool = False) -> Runtime:
    """The runtime for these settings in this process; LTSError for a device that is not there or a
    dtype it cannot run."""
    import torch

    rank, world, local = launch_env()
    cuda, mps = torch.cuda.is_available(), _mps_available()
    if device == "auto":
        device = "cuda" if cuda else "mps" if mps else "cpu"
    if device == "cuda" and not cuda:
        why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise LTSError(f"--device cuda: no CUDA device is available ({why}); use --device cpu, or auto")
    if device == "mps" and not mps:
        raise LTSError("--device mps: Apple's Metal backend is not available on this machine; use --device cpu, "
                       "or auto")
    if dtype == "fp16" and device == "cpu":
        raise LTSError("--dtype fp16 needs a GPU (cuda or mps): on the CPU use fp32, or bf16")
    if dtype == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise LTSError("--dtype bf16: this GPU has no bfloat16 support; use fp16 (with loss scaling) or fp32")
    if compile and device == "cpu" and not _cxx_compiler():
        raise LTSError("--compile on the CPU needs a C++ compiler (torch.compile's inductor generates C++): install "
                       "one (e.g. apt-get install g++), or leave out --compile")
    if device == "mps" and world > 1:
        raise LTSError("torchrun with --device mps: PyTorch has no multi-process backend for Metal; use one process")
    if device == "cuda":
        if local >= torch.cuda.device_count():
            raise LTSError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices are visible: "
                           "use --nproc_per_node <= the number of GPUs")
        dev = torch.device("cuda", local)
    else:
        dev = torch.device(device)
    return Runtime(device=dev, dtype=dtype, rank=rank, world=world, local_rank=local, compile=compile)


def _cxx_compiler() -> str | None:
    import shutil

    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
