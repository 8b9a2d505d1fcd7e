import os
import subprocess
import sys

from lts.core.locks import file_lock


def test_lock_file_is_usable_by_every_user(tmp_path):
    path = tmp_path / "locks" / "lts-measure.lock"
    old = os.umask(0o077)
    try:
        with file_lock(path, exclusive=True):
            pass
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666


def test_exclusive_lock_excludes_another_process_and_shared_locks_share(tmp_path):
    path = tmp_path / "x.lock"
    probe = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY)\n"
             "try:\n    fcntl.flock(fd, int(sys.argv[2]) | fcntl.LOCK_NB); print('free')\n"
             "except BlockingIOError:\n    print('held')\n")
    import fcntl

    def other(mode):
        return subprocess.run([sys.executable, "-c", probe, str(path), str(mode)], capture_output=True,
                              text=True).stdout.strip()

    with file_lock(path, exclusive=True):
        assert other(fcntl.LOCK_SH) == "held"
    with file_lock(path, exclusive=False):
        assert other(fcntl.LOCK_SH) == "free" and other(fcntl.LOCK_EX) == "held"
    assert other(fcntl.LOCK_EX) == "free"
