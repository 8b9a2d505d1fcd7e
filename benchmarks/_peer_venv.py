"""The project's side of the decode-benchmark peers (benchmarks/optimum_peer.py, benchmarks/ctranslate2_peer.py).

A peer is a library that cannot live in the project's own environment (Optimum pins transformers < 5;
CTranslate2 is kept out of it too), so it gets a virtual environment of its own in the LTS cache root,
made on first use by :func:`ensure_venv`, and its worker module (``benchmarks._optimum_worker``,
``benchmarks._ctranslate2_worker``) is run under that venv's python by :func:`run_worker`: the worker
prints one JSON line on stdout, everything else goes to stderr. The workers import only the standard
library and ``benchmarks._peer_worker`` at import time; this module is never imported by them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from benchmarks._models import save_random_model
from benchmarks._peer_worker import dist_version
from lts.core.fileio import cache_root

READY = ".lts-ready"  # written last by ensure_venv: its absence means an unfinished install
REPO = Path(__file__).resolve().parent.parent


def cache_dir(name: str) -> Path:
    """``name`` in the LTS cache root: ``$LTS_CACHE_DIR/name``, else ``$XDG_CACHE_HOME/lts/name``
    (``~/.cache/lts/name``)."""
    return cache_root() / name


def caller_pins(names: Iterable[str]) -> dict[str, str | None]:
    """The calling interpreter's versions of `names` (``torch``, ``onnxruntime``, ``transformers``, ...), for
    pinning them in a peer's venv; None where absent. torch's is its public version (no ``+cpu`` label: the
    registry has the plain one); onnxruntime's falls back to the module's ``__version__`` (a build installed
    under another distribution name, e.g. onnxruntime-openvino)."""
    pins: dict[str, str | None] = {}
    for name in names:
        version = dist_version(name)
        if version is None and name == "onnxruntime":
            try:
                import onnxruntime

                version = onnxruntime.__version__
            except ImportError:
                pass
        if version is not None and name == "torch":
            version = version.split("+")[0]
        pins[name] = version
    return pins


def spec(name: str, version: str | None) -> str:
    """``name==version``, or plain ``name`` when the version is unknown."""
    return f"{name}=={version}" if version else name


def child_env(venv: Path | None = None) -> dict[str, str]:
    """The environment for the venv's processes: none of the caller's site-packages may leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
    return env


def venv_of(python: Path) -> Path:
    """The venv folder of its ``bin/python``."""
    return Path(python).parent.parent


def venv_versions(python: Path, packages: Sequence[str]) -> dict[str, str | None]:
    """The installed versions of `packages` under `python` (None for those not installed)."""
    code = ("import json; from importlib import metadata as m\n"
            "def v(n):\n    try: return m.version(n)\n    except m.PackageNotFoundError: return None\n"
            f"print(json.dumps({{n: v(n) for n in {list(packages)!r}}}))")
    out = subprocess.run([str(python), "-c", code], env=child_env(venv_of(python)),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ensure_venv(path: Path, *, label: str, pins: dict[str, str | None], installs: Sequence[tuple[str, list[str]]],
                packages: Sequence[str], log: Callable[[str], object] = print) -> Path:
    """The python of the venv at `path`, made or completed if needed; a peer's ``ensure_venv`` calls this.

    `pins`: the caller's versions the venv is made with (:func:`caller_pins`); they are the marker file's
    content, so a change of them reinstalls. Steps, each logged in one line as ``[<label> venv] ...``:
    ``python -m venv``; ``pip install torch==<pins['torch']>`` (plain ``torch`` if that version is not
    installable there; skipped when `pins` has no ``torch`` key); then each of `installs`, ``(what,
    [requirement, ...])``, with the torch requirement added so pip keeps it. The marker file goes last,
    and the installed versions of `packages` are logged. Refuses a non-empty folder that is not a venv
    rather than clearing it.
    """
    path = Path(path).expanduser().resolve()
    python = path / "bin" / "python"
    marker = path / READY
    wanted = json.dumps(pins, sort_keys=True)
    if python.exists() and marker.exists() and marker.read_text(encoding="utf-8").strip() == wanted:
        return python
    marker.unlink(missing_ok=True)
    env = child_env(path)

    def step(what: str, cmd: list[str], check: bool = True) -> bool:
        log(f"[{label} venv] {what}")
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 and check:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
        return proc.returncode == 0

    if not python.exists():
        if path.exists() and any(path.iterdir()) and not (path / "pyvenv.cfg").exists():
            raise RuntimeError(f"{path} exists, is not empty and is not a virtual environment: not touching it")
        path.parent.mkdir(parents=True, exist_ok=True)
        step(f"creating a virtual environment in {path}", [sys.executable, "-m", "venv", "--clear", str(path)])
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    keep: list[str] = []
    if "torch" in pins:
        torch_spec = spec("torch", pins["torch"])
        pinned = pins["torch"] is not None  # a failed pin falls back to the newest torch; a failed plain torch raises
        if not step(f"installing {torch_spec} (the caller's torch; minutes)", [*pip, torch_spec], check=not pinned):
            step(f"{torch_spec} is not installable there: installing the newest torch", [*pip, "torch"])
            torch_spec = "torch"
        keep = [torch_spec]
    for what, requirements in installs:
        step(what, [*pip, *requirements, *keep])
    versions = venv_versions(python, packages)
    marker.write_text(wanted + "\n", encoding="utf-8")
    log(f"[{label} venv] ready: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return python


def worker_env(python: Path) -> dict[str, str]:
    """The venv's environment (:func:`child_env`) with the repository on the path, and nothing else of ours:
    ``python -m benchmarks._<peer>_worker`` finds this package's worker modules from any working directory."""
    return {**child_env(venv_of(python)), "PYTHONPATH": str(REPO)}


def run_worker(python: Path, module: str, argv: list[str], timeout_s: float, label: str) -> dict:
    """Run ``python -m module argv...`` in the venv's environment (:func:`worker_env`); the last JSON line it printed.

    Raises RuntimeError with the tail of the worker's stderr if it runs past `timeout_s`, fails or prints
    no result (`label` names the worker in the message).
    """
    cmd = [str(python), "-m", module, *argv]
    try:
        proc = subprocess.run(cmd, env=worker_env(python), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-3000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        raise RuntimeError(f"the {label} worker ran past {timeout_s:.0f} s; stderr tail:\n{tail}") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the {label} worker failed (exit {proc.returncode}); stderr tail:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def add_model_args(parser: argparse.ArgumentParser, label: str, venv_default: Path) -> None:
    """The arguments every peer script's CLI takes: its venv, the model folder, or the size and vocabulary of a
    random GPT-2 (:func:`model_dir`) when none is given, the prompts' length and the timing flags."""
    parser.add_argument("--venv", type=Path, default=None, help=f"the {label} venv (default {venv_default})")
    parser.add_argument("--model", type=Path, help="a saved transformers GPT-2 folder (save_pretrained)")
    parser.add_argument("--size", default="2x64",
                        help="without --model: LAYERSxN_EMBD of a random GPT-2 (%(default)s)")
    parser.add_argument("--vocab", type=int, default=512, help="without --model: its vocabulary (%(default)s)")
    parser.add_argument("--prompt-len", type=int, default=16, help="without prompts given: random prompts this long")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds the worker may run (default %(default)s)")


def model_dir(args: argparse.Namespace, tmp: Path) -> Path:
    """``--model``, else a random GPT-2 of ``--size`` and ``--vocab`` saved in `tmp` (this needs the project's venv)."""
    return args.model or save_random_model(args.size, args.vocab, tmp / "model")


def random_prompts(model: Path, batch: int, length: int) -> list[list[int]]:
    """`batch` prompts of `length` ids drawn (seed 0) below the model's vocabulary size less one."""
    vocab = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    rng = np.random.default_rng(0)
    return [[int(x) for x in rng.integers(0, vocab - 1, size=length)] for _ in range(batch)]


def print_timings(result: dict, title: str, setup: str, tokens: int) -> None:
    """A peer's figures: `title` and its versions, its options, `setup` (what was timed), tokens/s at `tokens` a run
    and, where each token was stamped, time to first token and per-token p50/p90; then the ids of every row."""
    print(f"# {title}: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print(f"# options: {json.dumps(result['options'])}")
    print(setup)
    line = f"tokens/s {tokens / statistics.median(result['totals']):.1f}"
    if result["firsts"]:
        gaps = result["per_token"] or [float("nan")]
        p50, p90 = (float(np.percentile(gaps, q)) * 1000 for q in (50, 90))
        line += (f"; time to first token {statistics.median(result['firsts']) * 1000:.1f} ms; per-token p50 "
                 f"{p50:.2f} ms, p90 {p90:.2f} ms")
    print(line)
    rows = result["ids"] if result["ids"] and isinstance(result["ids"][0], list) else [result["ids"]]
    for row in rows:
        print("ids: " + ",".join(map(str, row)))
