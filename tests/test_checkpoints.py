"""fcnfast.checkpoints: atomic writes (and the FCNFAST_CHECKPOINT_FSYNC switch) and the checked reader."""

from __future__ import annotations

import os

import pytest
import torch

from fcnfast.checkpoints import atomic_write_text, read_checkpoint, remove_stale_temp_files, save_checkpoint


def test_save_checkpoint_is_atomic_and_links_best(tmp_path, monkeypatch):
    monkeypatch.setenv("FCNFAST_CHECKPOINT_FSYNC", "1")
    path, best = tmp_path / "checkpoint.pth", tmp_path / "best.pth"
    save_checkpoint({"iteration": 1, "w": torch.ones(3)}, path, best)
    assert torch.load(best, weights_only=True)["iteration"] == 1

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"iteration": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["iteration"] == 1  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pth", "checkpoint.pth"]  # no temp files
    save_checkpoint({"iteration": 3}, path)
    assert torch.load(path, weights_only=True)["iteration"] == 3
    assert torch.load(best, weights_only=True)["iteration"] == 1  # replacing one link leaves the other


@pytest.mark.parametrize("switch, want_fsync", [("0", False), ("1", True)])
def test_every_atomic_write_honours_the_fsync_switch(tmp_path, monkeypatch, switch, want_fsync):
    monkeypatch.setenv("FCNFAST_CHECKPOINT_FSYNC", switch)
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    atomic_write_text(tmp_path / "config.json", "{}\n")
    text_calls = len(calls)
    save_checkpoint({"iteration": 1}, tmp_path / "checkpoint.pth")
    assert (tmp_path / "config.json").read_text() == "{}\n"
    assert (text_calls > 0) == want_fsync and (len(calls) > text_calls) == want_fsync, calls


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".checkpoint.pth.abc123.tmp").write_bytes(b"torn")
    (tmp_path / ".other.pth.abc123.tmp").write_bytes(b"not ours")
    remove_stale_temp_files(tmp_path, ["checkpoint.pth"])
    assert [p.name for p in tmp_path.iterdir()] == [".other.pth.abc123.tmp"]


def test_read_checkpoint_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*none.pth"):
        read_checkpoint(tmp_path / "none.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match="corrupt.pth is not a PyTorch checkpoint: it is a text file"):
        read_checkpoint(corrupt)
    whole = tmp_path / "whole.pth"
    torch.save({"iteration": 5, "w": torch.arange(1000.0)}, whole)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.pth cannot be read: it is truncated or corrupt"):
        read_checkpoint(truncated, mmap=False)
    listed = tmp_path / "list.pth"
    torch.save([1, 2], listed)
    with pytest.raises(ValueError, match="list.pth holds a list, not a dict"):
        read_checkpoint(listed)
    for mmap in (True, False):
        loaded = read_checkpoint(whole, mmap=mmap)
        assert loaded["iteration"] == 5 and torch.equal(loaded["w"], torch.arange(1000.0))


@pytest.mark.parametrize("content, kind", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 4, "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG image"),
    (bytes((i * 97 + 13) % 256 for i in range(4096)), "in a format fcnfast does not know"),
    (b"", "empty"),
])
def test_a_file_torch_did_not_write_is_named_as_such(tmp_path, content, kind):
    """Issue 11 #12: random bytes or a JPEG given as a checkpoint say so; torch's advice to load
    with weights_only=False never reaches the user."""
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert message == f"{path} is not a PyTorch checkpoint: it is {kind}" or kind in message, message
    assert "weights_only=False" not in message and "\n" not in message


def test_objects_torch_refuses_are_named_without_its_advice(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "arrays.pth"
    torch.save({"w": np.zeros(3)}, path)
    with pytest.raises(ValueError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert "numpy" in message and "state_dict()" in message and str(path) in message
    assert "weights_only=False" not in message and "\n" not in message
