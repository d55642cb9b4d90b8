"""Ctrl-C and a scheduler's SIGTERM stop `fcnfast train` with a checkpoint (issue 11 #3).

The run gets a real signal: SIGINT to its whole process group, as a terminal's Ctrl-C sends it
(DataLoader workers included), and SIGTERM to the main process, as a scheduler does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fcnfast import training as T
from fcnfast.cli import main
from fcnfast.data import make_toy_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "voc"
    make_toy_dataset(root, num_train=4, num_val=1, size=(20, 28), num_classes=3, seed=0)
    return root


def _train_args(data, out, workers):
    # Far more iterations than the test waits for, and no checkpoint due before the end.
    return ["train", "--data", str(data), "--out", str(out), "--model", "fcn32s", "--preset", "modern",
            "--num-classes", "3", "--batch-size", "1", "--iterations", "1000", "--checkpoint-every", "0",
            "--val-every", "0", "--log-every", "1", "--num-workers", str(workers), "--seed", "0", "--quiet",
            "--device", "cpu"]


def _logged_iterations(out: Path) -> int:
    log = out / "log.csv"
    return max(len(log.read_text().splitlines()) - 1, 0) if log.exists() else 0


@pytest.mark.parametrize("signum, workers", [(signal.SIGINT, 1), (signal.SIGTERM, 0)], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_saves_a_checkpoint_then_exits(toy, tmp_path, signum, workers):
    out = tmp_path / "run"
    env = dict(os.environ, FCNFAST_CHECKPOINT_FSYNC="0", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "fcnfast", *_train_args(toy, out, workers)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while _logged_iterations(out) < 1:
            if proc.poll() is not None:
                pytest.fail(f"training exited early ({proc.returncode}): {proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no iteration was logged")
            time.sleep(0.05)
        assert not (out / "checkpoint.pth").exists()  # none due: the signal must make one
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # the whole process group, as a terminal's Ctrl-C
        else:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signum, err
    checkpoint = T.read_checkpoint(out / "checkpoint.pth")
    assert checkpoint["iteration"] == _logged_iterations(out) >= 1  # the step in progress finished first
    name = signal.Signals(signum).name
    assert f"{name} received: stopping after this step" in err
    assert f"interrupted by {name} after iteration {checkpoint['iteration']}; saved {out / 'checkpoint.pth'}" in err
    assert "fcnfast train --resume" in err and "Traceback" not in err, err
    assert not list(out.glob(".*.tmp")) and not (out / ".lock").exists()  # atomic save; lock released
    if signum == signal.SIGTERM:
        # The checkpoint continues the run: one more step.
        resumed = main(["train", "--data", str(toy), "--out", str(out), "--resume", "--quiet",
                        "--iterations", str(checkpoint["iteration"] + 1), "--num-workers", "0"])
        assert resumed == 0
        assert T.read_checkpoint(out / "checkpoint.pth")["iteration"] == checkpoint["iteration"] + 1


def test_an_interrupt_before_any_checkpoint_does_not_offer_resume(toy, tmp_path, capsys, monkeypatch):
    import fcnfast.training as training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    rc = main(_train_args(toy, tmp_path / "run", 0))
    err = capsys.readouterr().err
    assert rc == 130
    assert "before any checkpoint was written: nothing to resume" in err and "--resume" not in err
