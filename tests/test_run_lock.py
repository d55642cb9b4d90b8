"""One training run per run directory (issue 11 #1): the lock, its stale detection, and the CLI's refusal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from cli_helpers import fails, small_toy, train_args
from fcnfast.training import RunLock, TrainingError
from fcnfast.training.lock import LOCK_NAME


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    first = RunLock(tmp_path).acquire()
    holder = json.loads((tmp_path / LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(TrainingError, match=f"in use by another fcnfast train .pid {os.getpid()} on"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path):  # free again
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lock_whose_holder_is_gone_is_taken_over(tmp_path):
    """A run killed with SIGKILL keeps its lock; the next run sees the pid is gone and takes it."""
    script = (f"import os, signal; from fcnfast.training import RunLock; RunLock({str(tmp_path)!r}).acquire(); "
              f"os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", script])
    assert killed.returncode == -9
    stale = json.loads((tmp_path / LOCK_NAME).read_text())
    lock = RunLock(tmp_path).acquire()
    assert lock.took_over["pid"] == stale["pid"] != os.getpid()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_recycled_pid_is_not_mistaken_for_the_holder(tmp_path):
    """The pid is alive (it is ours), but the process that took the lock started at another time."""
    (tmp_path / LOCK_NAME).write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "process_start": "1", "token": "x"}))
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc: process start times are unknown here")
    lock = RunLock(tmp_path).acquire()
    assert lock.took_over["process_start"] == "1"
    lock.release()


def test_locks_of_other_hosts_and_unreadable_locks_are_refused(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere.example"}))
    with pytest.raises(TrainingError, match=r"locked by pid \d+ on elsewhere.example.*delete .*\.lock"):
        RunLock(tmp_path).acquire()
    (tmp_path / LOCK_NAME).write_text("{torn")
    with pytest.raises(TrainingError, match="cannot be read"):
        RunLock(tmp_path).acquire()


def test_release_leaves_a_lock_another_run_took(tmp_path):
    lock = RunLock(tmp_path).acquire()
    other = {"pid": 1, "host": socket.gethostname(), "token": "someone else"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(other))
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == other


def test_train_on_a_directory_in_use_is_refused_in_one_line(tmp_path_factory, tmp_path, capsys):
    """Two `fcnfast train --out DIR` at once: the second stops before writing anything there."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").write_text("the first run's log\n")
    with RunLock(out):  # the first run, still going (this process is alive)
        fails(capsys, train_args(small_toy(tmp_path_factory), out), "is in use by another fcnfast train",
              f"pid {os.getpid()}")
    assert sorted(p.name for p in out.iterdir()) == ["log.csv"]
    assert (out / "log.csv").read_text() == "the first run's log\n"
