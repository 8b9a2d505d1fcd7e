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

What cannot be forked runs as a real subprocess: an environment that acts when the interpreter starts
(``PYTHONPATH``, ``PYTHONHOME``, ...), as the fault suite's "Ray is not installed" stub does.
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
STARTUP_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "PYTHONNOUSERSITE")
_context = None


def _forkserver():
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str, status: str) -> None:
    """The waiter: forks the process that runs the CLI and writes its exit status to `status`.

    The status goes through a file written here, not through multiprocessing's own channel: under many
    concurrent runs that channel now and then lost a status (the parent read 255 for a run that had
    printed its error and exited 2).
    """
    pid = os.fork()
    if pid == 0:
        try:
            _run(argv, cwd, env, out, err)
        finally:
            os._exit(70)  # only if _run itself failed: EX_SOFTWARE
    _, wait_status = os.waitpid(pid, 0)
    with open(status + ".tmp", "w") as f:
        f.write(str(os.waitstatus_to_exitcode(wait_status)))
    os.replace(status + ".tmp", status)


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
    :class:`subprocess.TimeoutExpired`."""
    argv = [str(a) for a in argv]
    env = dict(os.environ if env is None else env)
    if any(var in env and env[var] != os.environ.get(var) for var in STARTUP_VARS):
        return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
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
        with open(status) as f_status, open(out, errors="replace") as f_out, open(err, errors="replace") as f_err:
            return subprocess.CompletedProcess([sys.executable, *argv], int(f_status.read()), f_out.read(),
                                               f_err.read())


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
