"""The one child-process runner: messages, deadline, crash reasons."""

import os
import signal

import pytest

from lts.core.procs import MIB, ChildError, ChildProcess, crash_reason, peak_rss_bytes, rss_bytes


def _echo(conn, value):
    conn.send(("value", value * 2))


def _die(conn, how):
    if how == "raise":
        raise RuntimeError("boom")
    if how == "exit":
        print("loading...\nsomething went wrong", flush=True)
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)


def _hang(conn):
    import time

    time.sleep(60)


def test_messages_come_back():
    with ChildProcess(_echo, (21,), preload=(), timeout_s=60) as child:
        assert child.recv() == ("value", 42)


def test_an_exception_in_the_child_is_a_message():
    with ChildProcess(_die, ("raise",), preload=(), timeout_s=60) as child:
        assert child.recv() == ("error", "RuntimeError: boom")


def test_a_crash_is_a_reason_with_the_last_line(tmp_path):
    with ChildProcess(_die, ("exit",), preload=(), timeout_s=60, log_path=tmp_path / "log") as child:
        with pytest.raises(ChildError, match="exited with status 3: something went wrong") as err:
            child.recv()
    assert not err.value.timed_out
    with ChildProcess(_die, ("kill",), preload=(), timeout_s=60) as child:
        with pytest.raises(ChildError, match="SIGKILL"):
            child.recv()


def test_a_hang_times_out():
    with ChildProcess(_hang, (), preload=(), timeout_s=0.5) as child:
        with pytest.raises(ChildError, match="timeout") as err:
            child.recv()
        assert err.value.timed_out


def test_crash_reasons_name_the_signal():
    assert crash_reason(-9, "", 300 * MIB) == "killed by SIGKILL (out of memory?); peak RSS seen 300 MB"
    assert crash_reason(1, "loading...\nRuntimeError: boom\n\n") == "exited with status 1: RuntimeError: boom"


def test_memory_probes_see_this_process():
    assert 0 < rss_bytes() <= peak_rss_bytes()
