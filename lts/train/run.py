"""A whole training run, ``lts train``'s: check the inputs, prepare the tokens, build the model, run the loop
with checkpoints, save the model folder.

``train(settings)`` trains ``GPT2LMHeadModel`` (or the per-layer one) from the folder's
``config.json`` (every architecture field kept; only ``vocab_size`` follows the tokenizer) and
saves a ``save_pretrained`` folder atomically (written to a temp folder beside the target, then
renamed). In a plain process, or as one of torchrun's ranks: every rank returns the metrics;
rank 0 alone prints, checkpoints and writes the model folder.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Any

from lts.core.errors import LTSError
from lts.core.settings import must_match
from lts.families import Arch
from lts.train import checkpoint
from lts.train.loop import train_loop
from lts.train.model import build_model
from lts.train.runtime import Log, Runtime, resolve
from lts.train.settings import TrainSettings, check_inputs
from lts.train.tokens import Tokens, prepare_tokens

logger = logging.getLogger(__name__)


def train(settings: TrainSettings, log: Log = logger.info) -> dict[str, Any]:
    """Train the architecture in ``settings.model`` and save it to ``settings.out_dir``; returns the metrics."""
    arch = check_inputs(settings)
    rt = resolve(settings.device, settings.dtype, settings.compile)
    if not rt.main:
        log = _silent
    with rt.group():
        return _train(settings, arch, rt, log)


def _silent(_: str) -> None:
    pass


def _train(settings: TrainSettings, arch: Arch, rt: Runtime, log: Log) -> dict[str, Any]:
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    state = rt.from_main(lambda: checkpoint.read_state(settings.checkpoint_dir / checkpoint.STATE_FILE)) \
        if settings.resume else None
    tokens, digest = _tokens(settings, rt, state, log)
    batches, val = _batches(settings, tokens, rt)
    model, shaped = build_model(settings, arch, tokens.tokenizer, rt, log)
    _log_plan(settings, batches, rt, log)
    meta = checkpoint.run_meta(must_match(settings), digest, rt.world)
    if rt.main:
        _prepare_checkpoint_dir(settings, tokens, state, log)
    ckpt = settings.checkpoint_dir
    metrics = train_loop(model, batches, val, settings, state=state, log=log, desc=arch.archid, runtime=rt,
                         save_checkpoint=lambda s: checkpoint.save_state(ckpt, s, meta))
    metrics.update(_description(settings, arch, shaped, tokens, val, rt))
    if rt.main:
        _save(settings, model, tokens.tokenizer, metrics, log)
    rt.barrier()  # no rank leaves the group while rank 0 is still writing
    return metrics


def _tokens(settings: TrainSettings, rt: Runtime, state: dict | None, log: Log) -> tuple[Tokens, str]:
    """The run's tokens and their digest, which a resumed run's must equal."""
    from lts.train.shards import stream_digest

    t0 = time.perf_counter()
    tokens = prepare_tokens(settings, rt, log)
    log(f"corpus: {tokens.corpus}")
    log(f"tokens: {len(tokens.train):,} train, {len(tokens.validation):,} validation "
        f"({time.perf_counter() - t0:.1f} s to load)")
    log(f"tokenizer: {tokens.tokenizer_source}")
    digest = stream_digest(tokens.train)
    if state is not None and state["meta"]["train_digest"] != digest:
        raise LTSError("--resume: the training tokens differ from the checkpointed run's (data or tokenizer changed)")
    return tokens, digest


def _batches(settings: TrainSettings, tokens: Tokens, rt: Runtime) -> tuple[Any, Any]:
    """(the training batches, the validation windows); LTSError when the data cannot give every rank a batch."""
    from lts.train.data import Batches, eval_windows

    global_batch = settings.batch_size * rt.world * settings.grad_accum
    batches = Batches(tokens.train, settings.seq_len, global_batch, settings.seed)
    if rt.world > batches.n_windows // settings.batch_size:
        raise LTSError(f"world size {rt.world} is larger than the number of batches in the training data "
                       f"({batches.n_windows} windows of --seq-len {settings.seq_len} make "
                       f"{batches.n_windows // settings.batch_size} batches of --batch-size {settings.batch_size}); "
                       "use fewer processes, a smaller --batch-size, or more data")
    return batches, eval_windows(tokens.validation, settings.seq_len, settings.eval_windows)


def _log_plan(settings: TrainSettings, batches: Any, rt: Runtime, log: Log) -> None:
    import torch

    per = f"{settings.batch_size}" + (f" x {rt.world} processes" if rt.distributed else "") + \
        (f" x {settings.grad_accum} accumulated" if settings.grad_accum > 1 else "")
    tokens = settings.max_steps * settings.batch_size * rt.world * settings.grad_accum * settings.seq_len
    log(f"training: {settings.max_steps} steps x {per} x {settings.seq_len} tokens = {tokens:,} tokens "
        f"({batches.epochs(settings.max_steps):.2f} epochs), lr {settings.lr:g}, on {rt.describe()}, "
        f"{torch.get_num_threads()} threads" + (" per process" if rt.distributed else ""))


def _prepare_checkpoint_dir(settings: TrainSettings, tokens: Tokens, state: dict | None, log: Log) -> None:
    """On rank 0: keep a tokenizer trained here beside the checkpoint; a run that does not resume replaces the
    checkpoint it finds."""
    ckpt = settings.checkpoint_dir
    if tokens.tokenizer_trained:
        checkpoint.save_tokenizer(ckpt, tokens.tokenizer)
    if state is not None:
        log(f"resuming from step {state['step']} ({ckpt / checkpoint.STATE_FILE})")
    elif (ckpt / checkpoint.STATE_FILE).is_file():
        log(f"starting over: the checkpoint in {ckpt} will be replaced (pass --resume to continue it)")
        (ckpt / checkpoint.STATE_FILE).unlink()


def _description(settings: TrainSettings, arch: Arch, shaped: Arch, tokens: Tokens, val: Any,
                 rt: Runtime) -> dict[str, Any]:
    """What train_metrics.json says of the model, the data and the machine besides the loop's figures."""
    import torch

    return {
        "archid_source": arch.archid, "archid_trained": shaped.archid,
        **{k: v for k, v in arch.to_dict().items() if k not in ("vocab_size", "n_positions")},
        "vocab_size": shaped.vocab_size,
        "non_embedding_params": shaped.non_embedding_params(), "total_params": shaped.total_params(),
        "corpus": tokens.corpus, "train_tokens": int(len(tokens.train)), "val_tokens": int(len(tokens.validation)),
        "val_tokens_per_eval": int(val[:, 1:].size), "tokenizer": tokens.tokenizer_source,
        "threads": torch.get_num_threads(), "device": str(rt.device), "dtype": rt.dtype,
        "compile": rt.compile, "torch": torch.__version__, "settings": must_match(settings),
    }


def _save(settings: TrainSettings, model: Any, tokenizer: Any, metrics: dict[str, Any], log: Log) -> None:
    """On rank 0: the model folder; then the checkpoint goes (a finished run is not resumed)."""
    out = settings.out_dir
    checkpoint.save_model_folder(out, model, tokenizer, metrics)
    shutil.rmtree(settings.checkpoint_dir, ignore_errors=True)
    log(f"saved {out} (final val loss {metrics['final_val_loss']:.4f}, ppl {metrics['final_val_ppl']:.2f}; "
        f"best ppl {metrics['best_val_ppl']:.2f} at step {metrics['best_step']}; "
        f"{metrics['tokens_seen']:,} tokens in {metrics['wall_time_s']:.0f} s, "
        f"{metrics['tokens_per_s']:,.0f} tokens/s)")
