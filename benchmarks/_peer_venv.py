"""The machinery the decode-benchmark peers share (benchmarks/optimum_peer.py, benchmarks/ctranslate2_peer.py).

A peer is a library that cannot live in the project's own environment (Optimum pins transformers < 5;
CTranslate2 is kept out of it too), so it gets a virtual environment of its own in the LTS cache root,
made on first use by :func:`ensure_venv`, and its peer script is run under that venv's python in
worker mode (:func:`run_worker` here, :func:`worker_main` there): the worker prints one JSON line on
stdout, everything else goes to stderr.

This module is imported by the workers too, under the peer's venv: it needs nothing but the standard
library at import time (only :func:`cache_dir` imports lts, and only the project's side calls it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

READY = ".lts-ready"  # written last by ensure_venv: its absence means an unfinished install
REPO = Path(__file__).resolve().parent.parent


def cache_dir(name: str) -> Path:
    """``name`` in the LTS cache root: ``$LTS_CACHE_DIR/name``, else ``$XDG_CACHE_HOME/lts/name``
    (``~/.cache/lts/name``). Called in the project's environment only (never by a worker: it imports lts)."""
    sys.path.insert(0, str(REPO))
    from lts.core.fileio import cache_root

    return cache_root() / name


def dist_version(name: str) -> str | None:
    """The installed version of distribution `name` in this interpreter; None if it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


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


def run_worker(python: Path, script: Path, argv: list[str], timeout_s: float, label: str) -> dict:
    """Run ``python script --worker argv...`` in the venv's environment; the last JSON line it printed.

    Raises RuntimeError with the tail of the worker's stderr if it runs past `timeout_s`, fails or prints
    no result (`label` names the worker in the message).
    """
    cmd = [str(python), str(script), "--worker", *argv]
    try:
        proc = subprocess.run(cmd, env=child_env(venv_of(python)), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-3000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        raise RuntimeError(f"the {label} worker ran past {timeout_s:.0f} s; stderr tail:\n{tail}") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the {label} worker failed (exit {proc.returncode}); stderr tail:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def worker_main(measure: Callable[[], dict]) -> int:
    """A worker's end: run `measure` with fd 1 pointed at stderr (nothing, not even C++ code, can print on
    stdout), then print its result as one JSON line on the real stdout."""
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result = measure()
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def random_model(size: str, vocab: int, out_dir: Path) -> Path:
    """A random GPT-2 of `size` ("LAYERSxN_EMBD", benchmarks/generation.py's build_model), saved in `out_dir`: a peer
    script's model when it is given none. Needs the project's venv (never called by a worker)."""
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here.parent), str(here)]
    from generation import build_model, parse_sizes

    (n_layer, n_embd), = parse_sizes(size)
    model, _ = build_model(n_layer, n_embd, vocab)
    model.save_pretrained(out_dir)
    return out_dir


def add_model_args(parser: Any, label: str, venv_default: Path) -> None:
    """The arguments every peer script's CLI takes: its venv, the model folder, or the size and vocabulary of a
    random GPT-2 (:func:`random_model`) when none is given."""
    parser.add_argument("--venv", type=Path, default=None, help=f"the {label} venv (default {venv_default})")
    parser.add_argument("--model", type=Path, help="a saved transformers GPT-2 folder (save_pretrained)")
    parser.add_argument("--size", default="2x64",
                        help="without --model: LAYERSxN_EMBD of a random GPT-2 (%(default)s)")
    parser.add_argument("--vocab", type=int, default=512, help="without --model: its vocabulary (%(default)s)")
