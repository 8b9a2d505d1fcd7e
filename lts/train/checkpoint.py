"""What a training run writes to disk: its checkpoint (``<out>.ckpt/``) and its model folder (``<out>/``).

A checkpoint is ``state.pt`` (model, optimiser, scheduler, grad scaler, every rank's RNG, step,
history: what :func:`lts.train.loop.train_loop` needs to go on) and ``meta.json`` (what the run's
results depend on: the settings a resume must match, the digest of its training tokens, the number
of processes), readable without torch so that a resume with other settings is refused at once.
The model folder is a ``save_pretrained`` folder plus ``train_metrics.json``, written beside its
name and renamed into place, so it is either complete or absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lts.core import fileio
from lts.core.errors import LTSError

STATE_FILE = "state.pt"
META_FILE = "meta.json"
TOKENIZER_DIR = "tokenizer"  # a tokenizer trained by the run, so that a resume tokenizes alike
STATE_KEYS = ("model", "optimizer", "scheduler", "torch_rng", "step", "history", "best", "wall_time_s",
              "train_time_s", "meta")


def run_meta(must_match: dict[str, Any], train_digest: str, world: int) -> dict[str, Any]:
    """meta.json: the settings a resume must match (``fingerprint``), the training tokens' digest, the processes."""
    return {"fingerprint": must_match, "train_digest": train_digest, "world_size": world}


def check_resume(ckpt_dir: Path, must_match: dict[str, Any], world: int) -> None:
    """LTSError unless the checkpoint in `ckpt_dir` can be continued by a run with these settings and processes."""
    if not (ckpt_dir / STATE_FILE).is_file():
        raise LTSError(f"--resume: no checkpoint at {ckpt_dir / STATE_FILE} (nothing to resume)")
    try:
        meta = json.loads((ckpt_dir / META_FILE).read_text(encoding="utf-8"))
        saved = meta["fingerprint"]
        if not isinstance(saved, dict):
            raise TypeError(saved)
    except (OSError, ValueError, KeyError, TypeError):
        raise LTSError(f"--resume: {ckpt_dir / META_FILE} is missing or unreadable") from None
    now = json.loads(json.dumps(must_match))  # as it reads back from meta.json
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        raise LTSError(f"--resume: settings differ from the checkpointed run ({', '.join(diff)}); "
                       "use the same flags, or start over without --resume")
    if meta.get("world_size", 1) != world:
        raise LTSError(f"--resume: the checkpoint was written by {meta.get('world_size', 1)} processes, this run "
                       f"has {world}; resume with the same torchrun --nproc_per_node/--nnodes")


def read_state(path: Path) -> dict[str, Any]:
    """The state a resumed run continues from; LTSError when the file is corrupt or not a train.py checkpoint."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # junk, a cut-short file, a pickle torch refuses: all "cannot read"
        raise LTSError(f"--resume: cannot read the checkpoint {path}: it is corrupt or not a torch file "
                       f"({type(exc).__name__}); start over without --resume") from None
    missing = [k for k in STATE_KEYS if k not in state] if isinstance(state, dict) else list(STATE_KEYS)
    if missing or not isinstance(state["meta"], dict) or "train_digest" not in state["meta"]:
        raise LTSError(f"--resume: {path} is not a train.py checkpoint (missing: {', '.join(missing) or 'meta'}); "
                       "start over without --resume")
    return state


def save_state(ckpt_dir: Path, state: dict, meta: dict) -> None:
    """meta.json, then state.pt (atomically: a kill mid-write leaves the previous one)."""
    import torch

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    fileio.write_json(ckpt_dir / META_FILE, meta)
    with fileio.atomic_path(ckpt_dir / STATE_FILE) as tmp:
        torch.save({**state, "meta": meta}, tmp)


def save_tokenizer(ckpt_dir: Path, tokenizer: Any) -> None:
    """Keep a tokenizer the run trained beside its checkpoint (a resume must not train another)."""
    import shutil

    tok_dir = ckpt_dir / TOKENIZER_DIR
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(tok_dir)


def save_model_folder(out: Path, model: Any, tokenizer: Any, metrics: dict) -> None:
    """Write the whole folder beside ``out``, then swap it into place (never half-written)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with fileio.atomic_dir(out, replace=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        fileio.write_json(tmp / "train_metrics.json", metrics)
