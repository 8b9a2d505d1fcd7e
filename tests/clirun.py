"""Run the CLIs as users run them, each in a process of its own, without paying Python's imports every time.

Most CLI tests are short (a bad flag refused, a tiny search): a fresh ``python search.py`` spends ~1-2 s of CPU
importing torch, transformers, onnxruntime and pymoo before it reads its first flag, and the suite runs a few
hundred of them. :func:`run_cli` forks each run instead from a server process that imported those libraries
once (multiprocessing's ``forkserver``; the server has run nothing, so no thread pool is copied by the fork).
The child is still a process of its own, as a subprocess is: it gets the case's working folder, its whole
environment (``os.environ`` replaced), ``sys.argv`` and fds 1 and 2 on files, then runs the script as
``__main__`` (or ``python -m MODULE``), then finalises as the interpreter would (garbage, ``atexit``); its exit
status is the script's (``SystemExit``), 1 with the traceback on stderr for an uncaught exception, minus the
signal for a signal.

Replacing ``os.environ`` cannot undo what the server's libraries read from its environment when they were
imported: huggingface_hub fixes ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` in its constants,
transformers and datasets their offline modes and caches, the OpenMP runtime ``OMP_NUM_THREADS``, the interpreter
``PYTHONPATH`` and its other start-up settings. So a case is forked only when its environment equals the
server's in every variable but :data:`FORKABLE_VARS` (and names starting with :data:`FORKABLE_PREFIXES`), which
are read when used, after the child took the case's environment; any other difference runs the case as a real
subprocess (a fresh interpreter), as the fault suite's "Ray is not installed" stub (``PYTHONPATH``) and a case
with an ``HF_HOME`` of its own do. The server's environment is what the forked waiter inherited from it, so
the comparison holds whatever test happened to start the server. ``tests/test_clirun.py`` checks the list
against what the libraries read at import.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing as mp
import os
import runpy
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Mapping, Sequence

import psutil

REPO = Path(__file__).resolve().parents[1]
# What the CLIs import on their way to the first flag they check (importing more only costs the server).
PRELOAD = ["numpy", "yaml", "torch", "transformers", "onnx", "onnxruntime", "pymoo.algorithms.moo.nsga2",
           "lts.core.cli", "lts.cost.evaluator", "lts.search.job", "lts.train.loop", "lts.generate",
           "lts.compare.runner"]
# Variables a case may set differently from the server and still be forked: none of the preloaded libraries
# reads them at import. LTS_* (LTS_FAULT, LTS_CACHE_DIR, ...) are read by LTS when it uses them; pytest sets
# PYTEST_CURRENT_TEST for each test; _run applies PYTHONDONTWRITEBYTECODE itself; argparse reads COLUMNS and LINES
# when it formats help; the tokenizers library reads TOKENIZERS_PARALLELISM when it first runs in parallel;
# CUDA_VISIBLE_DEVICES is read when CUDA initialises, which the server never does (see forkable); importing
# onnxruntime_genai (not preloaded) sets ORT_LIB_PATH in the test process, and only it reads it, when imported;
# ray.init sets PYTHONBREAKPOINT in the test process (its debugger hook), which sys.breakpointhook reads at each
# breakpoint() call, never at start-up.
FORKABLE_VARS = frozenset({"PYTEST_CURRENT_TEST", "PYTHONDONTWRITEBYTECODE", "COLUMNS", "LINES",
                           "TOKENIZERS_PARALLELISM", "CUDA_VISIBLE_DEVICES", "ORT_LIB_PATH", "PYTHONBREAKPOINT"})
FORKABLE_PREFIXES = ("LTS_",)
FRESH = "fresh"  # the waiter's status for a case the server cannot run: its environment differs where it counts
_context = None


def _forkserver():
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def start_server() -> None:
    """Start the fork server now, in this process's environment as it is (the session's, before any test changes
    it). Whoever starts it first fixes the environment its children inherit, for the whole session: in-process
    measurements (``lts.core.procs``) use the same server, and a test that set TMPDIR or HOME would otherwise leave
    it with that test's values, so that every later case differs from it and runs in a fresh interpreter."""
    from multiprocessing import forkserver

    _forkserver()
    forkserver.ensure_running()


def forkable(var: str) -> bool:
    """Whether a case may set `var` differently from the server and still be forked from it."""
    if var == "CUDA_VISIBLE_DEVICES":  # torch reads it when CUDA initialises; after that a fork cannot use CUDA
        torch = sys.modules.get("torch")
        return torch is None or not torch.cuda.is_initialized()
    return var in FORKABLE_VARS or var.startswith(FORKABLE_PREFIXES)


def import_time_differences(env: Mapping[str, str], imported_with: Mapping[str, str]) -> list[str]:
    """The variables, but the forkable ones, in which `env` differs from `imported_with` (the environment the
    libraries were imported in): if any, a process forked from those imports would not run as `env` says."""
    return sorted(var for var in set(env) | set(imported_with)
                  if env.get(var) != imported_with.get(var) and not forkable(var))


def _write_status(status: str, text: str) -> None:
    with open(status + ".tmp", "w") as f:
        f.write(text)
    os.replace(status + ".tmp", status)


def _child(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str, status: str) -> None:
    """The waiter: forks the process that runs the CLI and writes its exit status to `status`, or :data:`FRESH`
    (and forks nothing) when `env` differs from the server's (this process's, inherited) where a library read it.

    The status goes through a file written here, not through multiprocessing's own channel: under many
    concurrent runs that channel now and then lost a status (the parent read 255 for a run that had
    printed its error and exited 2).
    """
    if import_time_differences(env, os.environ):
        _write_status(status, FRESH)
        return
    pid = os.fork()
    if pid == 0:
        try:
            _run(argv, cwd, env, out, err)
        finally:
            os._exit(70)  # only if _run itself failed: EX_SOFTWARE
    _, wait_status = os.waitpid(pid, 0)
    _write_status(status, str(os.waitstatus_to_exitcode(wait_status)))


def _run(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.dont_write_bytecode = env.get("PYTHONDONTWRITEBYTECODE", "") != ""
    code: object = 0
    try:
        if argv[0] == "-m":  # python -m MODULE ARGS
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:  # python SCRIPT ARGS: the script's folder first on sys.path, as the interpreter puts it
            sys.argv = list(argv)
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    # The interpreter's shutdown, which a forked child skips: what the script left is finalised (an SQLite
    # connection closed checkpoints its write-ahead log into the database file) and atexit handlers run.
    gc.collect()
    atexit._run_exitfuncs()
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code & 0xFF)


def run_cli(argv: Sequence[str | os.PathLike], cwd: str | os.PathLike, env: Mapping[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """``python *argv`` in `cwd` with `env` (default: this process's), as :func:`subprocess.run` with
    ``capture_output=True, text=True`` returns it; a run past `timeout` seconds is killed and raises
    :class:`subprocess.TimeoutExpired`. Forked from the server, or a fresh interpreter where `env` differs from
    the server's in a variable a library read at import (the module's docstring)."""
    argv = [str(a) for a in argv]
    env = dict(os.environ if env is None else env)
    if import_time_differences(env, os.environ):  # the server inherited this process's: no need to ask it
        return _fresh(argv, cwd, env, timeout)
    with tempfile.TemporaryDirectory(prefix="lts-cli-") as tmp:
        out, err, status = (os.path.join(tmp, name) for name in ("stdout", "stderr", "status"))
        proc = _forkserver().Process(target=_child, args=(argv, str(cwd), env, out, err, status))
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            for p in psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]:
                p.kill()
            proc.join()
            raise subprocess.TimeoutExpired([sys.executable, *argv], timeout)
        if not os.path.exists(status):
            raise RuntimeError(f"the waiter of {' '.join(argv)} ended without a status (exit code {proc.exitcode})")
        with open(status) as f_status:
            code = f_status.read()
        if code == FRESH:  # the server was started in another environment than this process's now
            return _fresh(argv, cwd, env, timeout)
        with open(out, errors="replace") as f_out, open(err, errors="replace") as f_err:
            return subprocess.CompletedProcess([sys.executable, *argv], int(code), f_out.read(), f_err.read())


def _fresh(argv: list[str], cwd: str | os.PathLike, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def load_script(path: str | os.PathLike) -> object:
    """A top-level script (e.g. generate_text.py) as a module, its ``main`` not run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{Path(path).stem}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main_in_process(script: object, path: str | os.PathLike, capsys: object, *argv: object) -> tuple[int, str, str]:
    """``script.main`` through ``lts.core.cli.run_cli`` in this process (the script's own code path, without an
    interpreter's start-up): (exit status, stdout, stderr), read with pytest's `capsys`."""
    from lts.core.cli import run_cli as run_main

    capsys.readouterr()
    argv0, sys.argv[0] = sys.argv[0], str(path)  # run_cli names the program after argv[0]
    try:
        rc = run_main(script.main, [str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors exit from inside main
        rc = exc.code
    finally:
        sys.argv[0] = argv0
    out, err = capsys.readouterr()
    return rc, out, err
