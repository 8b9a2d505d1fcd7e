"""A search's checkpoint: the pickled pymoo algorithm (its random generator inside) and the run log, written
atomically after each generation, read back by ``--resume``."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymoo.core.algorithm import Algorithm

from lts.core import faults, fileio
from lts.core.errors import LTSError, first_line

CHECKPOINT = "checkpoint.pkl"


@dataclass
class RunState:
    """Everything a checkpoint holds."""

    algorithm: Algorithm  # set up on the problem; NSGA-II, or Exhaustive
    generation: int = 0  # generations (an exhaustive run's batches) completed
    log: list[dict[str, Any]] = field(default_factory=list)  # one row per candidate, in order
    finished: bool = False


def save_checkpoint(run_dir: Path, state: RunState) -> None:
    with fileio.atomic_path(run_dir / CHECKPOINT) as tmp:
        with open(tmp, "wb") as f:
            data = pickle.dumps(state)
            f.write(data[: len(data) // 2])
            faults.point("checkpoint")  # the fault suite kills the search here, mid-write
            f.write(data[len(data) // 2:])


def read_run_state(run_dir: Path) -> RunState:
    """The run's checkpoint; LTSError (one line) when there is none or it is not an LTS search state."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise LTSError(f"nothing to resume: no {CHECKPOINT} in {run_dir}")
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except (ModuleNotFoundError, AttributeError) as exc:  # names a class this LTS (or pymoo) does not have
        raise LTSError(f"cannot read checkpoint {path}: written by another version of LTS or pymoo "
                       f"({first_line(exc)}); start the search again") from None
    except Exception as exc:  # a corrupt/foreign file is user input here
        raise LTSError(f"cannot read checkpoint {path}: {first_line(exc)}") from None
    if not isinstance(state, RunState) or not isinstance(state.algorithm, Algorithm):
        raise LTSError(f"cannot read checkpoint {path}: it holds a {type(state).__name__}, not an LTS search state")
    return state
