"""`fcnfast train` checks every label against the class count before the run exists, and a file
that breaks in a DataLoader worker later is one line, not the worker's traceback (issue 11 #9)."""

from __future__ import annotations

import multiprocessing

import pytest

from fcnfast.data import make_toy_dataset
from cli_helpers import NUM_CLASSES, fails, small_toy, train_args


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return small_toy(tmp_path_factory)


def test_train_with_too_few_classes_names_the_label_and_creates_nothing(toy, tmp_path, capsys):
    out = tmp_path / "run"
    argv = train_args(toy, out, "--num-workers", "2")
    argv[argv.index("--num-classes") + 1] = "2"
    fails(capsys, argv, "label image", "SegmentationClass", "outside {0..1, 255}", "num_classes=2")
    assert not out.exists()


def test_a_file_that_breaks_in_a_loader_worker_is_one_line(toy, tmp_path, capsys):
    from fcnfast.training.data_checks import worker_error_message

    broken = tmp_path / "voc"
    make_toy_dataset(broken, num_train=2, num_val=0, size=(16, 20), num_classes=NUM_CLASSES)
    (broken / "JPEGImages" / "toy_000001.jpg").write_bytes(b"not a jpeg")
    fails(capsys, train_args(broken, tmp_path / "run", "--num-workers", "1", "--iterations", "2"),
           "cannot read image", "toy_000001.jpg")
    # The worker is gone: it ignores SIGTERM, so one left behind would hang the interpreter at exit.
    assert multiprocessing.active_children() == []
    assert worker_error_message(ValueError("plain")) == "plain"
