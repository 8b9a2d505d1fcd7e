"""The training loop: AdamW steps over a run's batches, with validation and the state a checkpoint keeps.

:func:`train_loop` is the loop alone: the caller gives it a model, its batches and validation
windows (:mod:`lts.train.run` does for ``lts train``; the proxy-validation and throughput
benchmarks give it pre-tokenised streams). A step: this rank's rows of the global batch, forward,
backward (accumulated; DDP syncs the gradients on the last micro-batch), clip, AdamW step; every
``eval_every`` steps the validation loss, every ``save_every`` a checkpoint.

Resume: the state a checkpoint keeps (model, optimiser, scheduler, grad scaler, every rank's torch
RNG, step, history) is restored before the first step, and the data order is a pure function of
``(seed, step)`` (:class:`lts.train.data.Batches`), so a run killed after step k and resumed
computes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from lts.core.errors import LTSError
from lts.train.runtime import Log, Runtime
from lts.train.settings import TrainSettings

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- optimiser and evaluation


@dataclass
class Optimizer:
    """What one optimiser step updates: AdamW, its learning-rate schedule, and (fp16) the grad scaler."""

    opt: Any
    sched: Any
    scaler: Any = None

    def backward(self, loss: Any) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, model: Any, grad_clip: float) -> None:
        """Clip the gradients, step AdamW and the schedule, clear the gradients."""
        import torch

        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)


def make_optimizer(model: Any, settings: TrainSettings, rt: Runtime) -> Optimizer:
    """AdamW (decay on matrices only, not biases/LayerNorm) + cosine schedule with linear warm-up."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = dict(lr=settings.lr, betas=(settings.beta1, settings.beta2))
    try:
        opt = torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # fused AdamW not available for this device/build
        opt = torch.optim.AdamW(groups, foreach=True, **kwargs)
    sched = get_cosine_schedule_with_warmup(opt, min(settings.warmup_steps, settings.max_steps), settings.max_steps)
    return Optimizer(opt, sched, rt.make_scaler())


def evaluate_loss(model: Any, windows: np.ndarray, batch_size: int, runtime: Runtime | None = None) -> float:
    """Mean next-token cross-entropy (nats/token) over validation windows (n, seq_len + 1).

    Across torchrun's ranks each evaluates every world-th window and the sums are added up.
    """
    import torch
    import torch.nn.functional as F

    rt = runtime or Runtime()
    was_training = model.training
    model.eval()
    mine = windows[rt.rank::rt.world] if rt.distributed else windows
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(mine), batch_size):
            w = torch.from_numpy(mine[i:i + batch_size]).to(rt.device)
            with rt.autocast():
                logits = model(input_ids=w[:, :-1].contiguous(), use_cache=False).logits  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), w[:, 1:].flatten(), reduction="sum")
            total += float(loss)
            count += w[:, 1:].numel()
    model.train(was_training)
    total, count = rt.sum([total, count])
    return total / count


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")  # nan stays nan


def _fmt_ppl(loss: float) -> str:
    return "n/a" if math.isnan(loss) else f"{perplexity(loss):.1f}"


# ---------------------------------------------------------------------------- where a run stands


@dataclass
class Progress:
    """Where a run stands: its step, evaluations, best loss and time (a checkpoint keeps them, the metrics
    report them). Times of the runs this one continues are in ``*_before``."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"val_loss": float("inf"), "step": 0})
    wall_before: float = 0.0
    train_before: float = 0.0
    start_step: int = 0
    started: float = 0.0  # time.perf_counter() when this process's first step began
    train_time: float = 0.0  # seconds this process spent in steps
    step_times: list[float] = field(default_factory=list)
    loss_ema: float | None = None

    @property
    def val_loss(self) -> float:
        return self.history[-1]["val_loss"] if self.history else float("nan")

    def wall_time(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def total_train_time(self) -> float:
        return self.train_before + self.train_time

    def record_step(self, loss: float, seconds: float) -> None:
        self.step += 1
        if not math.isfinite(loss):
            raise LTSError(f"training diverged at step {self.step} (loss {loss}); try a smaller --lr")
        self.step_times.append(seconds)
        self.train_time += seconds
        self.loss_ema = loss if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * loss

    def record_eval(self, val_loss: float, tokens_per_step: int) -> None:
        assert self.loss_ema is not None
        self.history.append({"step": self.step, "tokens_seen": self.step * tokens_per_step,
                             "train_loss": round(self.loss_ema, 6), "val_loss": val_loss,
                             "val_ppl": perplexity(val_loss)})
        if val_loss < self.best["val_loss"]:
            self.best = {"val_loss": val_loss, "step": self.step}


# ---------------------------------------------------------------------------- checkpoint state


def _rng_state(rt: Runtime) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.get_rng_state(rt.device) if rt.device_type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def _restore_rng(state: dict[str, Any], rt: Runtime) -> None:
    import torch

    per_rank = state.get("rng")
    if not per_rank:  # a checkpoint of one CPU process
        torch.set_rng_state(state["torch_rng"])
        return
    mine = per_rank[rt.rank]
    torch.set_rng_state(mine["cpu"])
    if mine.get("cuda") is not None and rt.device_type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"], rt.device)


def _resume(state: dict[str, Any], model: Any, optim: Optimizer, rt: Runtime) -> Progress:
    """Load a checkpoint's state into the model, the optimiser and this rank's RNG; where the run stood."""
    model.load_state_dict(state["model"])
    optim.opt.load_state_dict(state["optimizer"])
    optim.sched.load_state_dict(state["scheduler"])
    _restore_rng(state, rt)
    if optim.scaler is not None and state.get("scaler"):
        optim.scaler.load_state_dict(state["scaler"])
    return Progress(step=state["step"], history=list(state["history"]), best=dict(state["best"]),
                    wall_before=state["wall_time_s"], train_before=state["train_time_s"], start_step=state["step"])


def _checkpoint_state(model: Any, optim: Optimizer, progress: Progress, rngs: list[dict[str, Any]],
                      tokens_per_step: int) -> dict[str, Any]:
    """Everything a resumed run needs (lts.train.checkpoint reads it back)."""
    import torch

    return {"model": model.state_dict(), "optimizer": optim.opt.state_dict(), "scheduler": optim.sched.state_dict(),
            "torch_rng": torch.get_rng_state(), "rng": rngs, "step": progress.step, "history": progress.history,
            "best": progress.best, "tokens_seen": progress.step * tokens_per_step,
            "scaler": optim.scaler.state_dict() if optim.scaler is not None else None,
            "wall_time_s": progress.wall_time(), "train_time_s": progress.total_train_time()}


# ---------------------------------------------------------------------------- the loop


def train_loop(model: Any, batches: Any, val_windows: np.ndarray, settings: TrainSettings, *, state: dict | None = None,
               save_checkpoint: Callable[[dict], None] | None = None, log: Log = logger.info,
               desc: str = "train", runtime: Runtime | None = None) -> dict[str, Any]:
    """Train ``model`` for ``settings.max_steps`` steps (from ``state['step']`` if resuming).

    ``batches.batch(step)`` gives the step's global batch (``batch_size x world x grad_accum``
    rows); this process computes its rows (see :mod:`lts.train.runtime`). Returns the run's
    metrics (losses in nats/token). ``save_checkpoint(state)`` is called on rank 0 every
    ``save_every`` steps with everything needed to resume.
    """
    from tqdm.auto import tqdm

    rt = runtime or Runtime()
    model.to(rt.device)
    optim = make_optimizer(model, settings, rt)
    progress = _resume(state, model, optim, rt) if state is not None else Progress()
    net, ddp = rt.wrap(model)
    tokens_per_step = settings.batch_size * rt.world * settings.grad_accum * settings.seq_len
    model.train()
    progress.started = time.perf_counter()
    bar = tqdm(total=settings.max_steps, initial=progress.step, desc=desc, unit="step",
               disable=not (settings.progress and rt.main), dynamic_ncols=True, leave=False)
    try:
        while progress.step < settings.max_steps:
            t0 = time.perf_counter()
            loss = _train_step(net, ddp, model, optim, batches.batch(progress.step), settings, rt)
            progress.record_step(loss, time.perf_counter() - t0)
            if progress.step % settings.eval_every == 0 or progress.step == settings.max_steps:
                progress.record_eval(evaluate_loss(model, val_windows, settings.batch_size, rt), tokens_per_step)
                with tqdm.external_write_mode():  # print above the bar, not through it
                    log(f"step {progress.step}/{settings.max_steps}: train loss {progress.loss_ema:.4f}, "
                        f"val loss {progress.val_loss:.4f}, val ppl {perplexity(progress.val_loss):.2f}")
            _show(bar, progress, tokens_per_step)
            if save_checkpoint is not None and progress.step % settings.save_every == 0 \
                    and progress.step < settings.max_steps:
                rngs = rt.gather(_rng_state(rt))  # every rank's generator, so each resumes its own dropout stream
                if rt.main:
                    save_checkpoint(_checkpoint_state(model, optim, progress, rngs, tokens_per_step))
    finally:
        bar.close()
    return _metrics(progress, batches, settings, rt, resumed=state is not None)


def _train_step(net: Any, ddp: Any, model: Any, optim: Optimizer, rows: np.ndarray, settings: TrainSettings,
                rt: Runtime) -> float:
    """One optimiser step on this rank's rows of the global batch ``rows`` (micro * world * accum, T + 1);
    returns its mean training loss over every rank (so every rank stops alike on divergence)."""
    import torch
    import torch.nn.functional as F

    micro, accum = settings.batch_size, settings.grad_accum
    loss_sum = None
    for k in range(accum):
        first = (k * rt.world + rt.rank) * micro
        w = torch.from_numpy(rows[first:first + micro]).to(rt.device)
        x, y = w[:, :-1].contiguous(), w[:, 1:].contiguous()
        # DDP all-reduces gradients on the last micro-batch only
        with ddp.no_sync() if ddp is not None and k < accum - 1 else contextlib.nullcontext():
            with rt.autocast():
                logits = net(input_ids=x, use_cache=False).logits  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            optim.backward(loss / accum if accum > 1 else loss)
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
    optim.step(model, settings.grad_clip)
    loss_value = float(loss_sum) / accum
    if rt.distributed:
        loss_value = rt.sum([loss_value])[0] / rt.world
    return loss_value


def _show(bar: Any, progress: Progress, tokens_per_step: int) -> None:
    tok_s = (progress.step - progress.start_step) * tokens_per_step / max(progress.train_time, 1e-9)
    bar.set_postfix(loss=f"{progress.loss_ema:.3f}", tok_s=f"{tok_s:,.0f}", val_ppl=_fmt_ppl(progress.val_loss),
                    refresh=False)
    bar.update(1)


def _metrics(progress: Progress, batches: Any, settings: TrainSettings, rt: Runtime, *,
             resumed: bool) -> dict[str, Any]:
    """The loop's part of train_metrics.json."""
    global_batch = settings.batch_size * rt.world * settings.grad_accum
    tokens_per_step = global_batch * settings.seq_len
    tokens_seen, train_time = progress.step * tokens_per_step, progress.total_train_time()
    final, best = progress.history[-1]["val_loss"], progress.best
    steady = progress.step_times[3:] or progress.step_times  # the first steps warm caches up (and compile)
    return {
        "final_val_loss": final, "final_val_ppl": perplexity(final),
        "best_val_loss": best["val_loss"], "best_val_ppl": perplexity(best["val_loss"]), "best_step": best["step"],
        "steps": progress.step, "tokens_seen": tokens_seen, "epochs": round(batches.epochs(progress.step), 4),
        "wall_time_s": round(progress.wall_time(), 3),
        "train_time_s": round(train_time, 3),
        "tokens_per_s": round(tokens_seen / max(train_time, 1e-9), 1),
        "steady_tokens_per_s": round(tokens_per_step / statistics.median(steady), 1) if steady else None,
        "global_batch": global_batch, "grad_accum": settings.grad_accum, "world_size": rt.world,
        "resumed_from_step": progress.start_step if resumed else None,
        "history": progress.history,
    }
