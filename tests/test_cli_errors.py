"""Every command reports an expected failure as one line on stderr with exit code 2, before its
work starts where it can (issue 11 #2, #7, #8, #10, #13; #9 is in test_train_checks.py)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch
from PIL import Image

import fcnfast
from fcnfast.cli import main
from fcnfast.models import build_model
from cli_helpers import NUM_CLASSES, fails, small_toy, train_args


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return small_toy(tmp_path_factory)


@pytest.fixture(scope="module")
def fcn32s_5(tmp_path_factory):
    """A plain state dict of a 5-class FCN-32s (no arch, no num_classes in the file)."""
    path = tmp_path_factory.mktemp("ckpt") / "fcn32s_5.pth"
    torch.save(build_model("fcn32s", num_classes=5).state_dict(), path)
    return path


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((18, 22, 3)) * 255).astype(np.uint8)).save(path)
    return path


# ---- #7: output folders are checked before the work starts --------------------------------------


def _commands_writing_to(out, toy, image, ckpt):
    return {
        "segment": ["segment", str(image), "-o", str(out), "--device", "cpu"],
        "evaluate": ["evaluate", "--data", str(toy), "--checkpoint", str(ckpt), "--predictions", str(out)],
        "make-toy-dataset": ["make-toy-dataset", str(out)],
        "train": train_args(toy, out),
        "bench": ["bench", "--size", "16", "--device", "cpu", "--out", str(out)],
    }


@pytest.mark.parametrize("command", ["segment", "evaluate", "make-toy-dataset", "train", "bench"])
def test_an_unwritable_output_folder_fails_before_the_work(command, toy, image, fcn32s_5, tmp_path, capsys, monkeypatch):
    import fcnfast.benchmark as benchmark

    monkeypatch.setattr(benchmark, "run_benchmark", lambda *a, **k: pytest.fail("bench measured before checking --out"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "out"  # cannot be created: its parent is a file
    fails(capsys, _commands_writing_to(out, toy, image, fcn32s_5)[command], out, "is a file, not a folder")

    # A folder that refuses new files (a read-only mount, or no permission; root ignores modes,
    # so the refusal is simulated where the check writes).
    import fcnfast.commands._checks as checks

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(kwargs.get("dir", ""), "probe"))

    monkeypatch.setattr(checks.tempfile, "mkstemp", refuse)
    out = tmp_path / "readonly"
    out.mkdir()
    fails(capsys, _commands_writing_to(out, toy, image, fcn32s_5)[command], out, "cannot write there: permission denied")
    assert list(out.iterdir()) == []


def test_a_write_error_during_the_work_is_one_line(tmp_path, image, capsys, monkeypatch):
    """The last resort: an OSError while writing outputs names the file and the problem."""
    import fcnfast.images as images

    def refuse(img, path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(images, "save_image", refuse)
    fails(capsys, ["segment", str(image), "-o", str(tmp_path / "o"), "--device", "cpu"],
           tmp_path / "o" / "img_label.png", "permission denied")


# ---- #2: make-toy-dataset never overwrites a dataset silently ------------------------------------


def test_make_toy_dataset_refuses_a_folder_that_holds_files(tmp_path, capsys):
    voc = tmp_path / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    train_txt = voc / "ImageSets" / "Segmentation" / "train.txt"
    train_txt.write_text("2007_000032\n")
    fails(capsys, ["make-toy-dataset", str(voc)], voc, "is not empty", "--force")
    assert train_txt.read_text() == "2007_000032\n"
    assert main(["make-toy-dataset", str(voc), "--train", "1", "--val", "1", "--force"]) == 0
    assert train_txt.read_text() == "toy_000000\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["make-toy-dataset", str(empty), "--train", "1", "--val", "0"]) == 0


# ---- #8: a backend that cannot run is reported at start-up -------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_evaluate_with_a_gpu_backend_without_a_gpu(toy, fcn32s_5, capsys, backend):
    if backend == "triton" and fcnfast.backends.triton_interpreted():
        pytest.skip("TRITON_INTERPRET=1 runs triton on the CPU")
    ckpt = fcn32s_5.parent / "fcn32s_3.pth"
    torch.save(build_model("fcn32s", num_classes=NUM_CLASSES).state_dict(), ckpt)
    fails(capsys, ["evaluate", "--data", str(toy), "--checkpoint", str(ckpt), "--backend", backend],
           f"backend '{backend}' was requested but cannot run")


@pytest.mark.parametrize("value, needle", [("bogus", "unknown backend 'bogus' (by FCNFAST_BACKEND)"),
                                           *([] if torch.cuda.is_available() else
                                             [("cuda", "backend 'cuda' was requested (by FCNFAST_BACKEND)")])])
def test_fcnfast_backend_is_checked_at_start_up(value, needle, toy, image, fcn32s_5, tmp_path, capsys, monkeypatch):
    import fcnfast.benchmark as benchmark

    monkeypatch.setattr(benchmark, "run_benchmark", lambda *a, **k: pytest.fail("bench measured with a bad backend"))
    monkeypatch.setenv("FCNFAST_BACKEND", value)
    ckpt = tmp_path / "fcn32s_3.pth"
    torch.save(build_model("fcn32s", num_classes=NUM_CLASSES).state_dict(), ckpt)
    for argv in (["segment", str(image), "-o", str(tmp_path / "s"), "--device", "cpu"],
                 ["evaluate", "--data", str(toy), "--checkpoint", str(ckpt), "--device", "cpu"],
                 train_args(toy, tmp_path / "t"),
                 ["bench", "--size", "16", "--device", "cpu", "--out", str(tmp_path / "b")]):
        fails(capsys, argv, needle)
    assert not (tmp_path / "t").exists()


# ---- #10: a full disk ---------------------------------------------------------------------------


def test_a_full_disk_while_saving_says_so_and_keeps_the_old_checkpoint(toy, tmp_path, capsys, monkeypatch):
    """torch.save turns the OSError of a full disk into "unexpected pos ..."; fcnfast names the folder."""
    import fcnfast.checkpoints as checkpoints

    out = tmp_path / "run"
    assert main(train_args(toy, out)) == 0
    before = (out / "checkpoint.pth").read_bytes()
    real_fdopen = checkpoints.os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(checkpoints.os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    fails(capsys, ["train", "--data", str(toy), "--out", str(out), "--resume", "--iterations", "2", "--quiet",
                    "--num-workers", "0"], f"no space left on {out}", "checkpoint.pth")
    assert (out / "checkpoint.pth").read_bytes() == before and not list(out.glob(".*.tmp"))


def test_reporting_full_disk_names_the_folder_for_plain_writes(tmp_path):
    from fcnfast.errors import NoSpaceLeftError, reporting_full_disk

    with pytest.raises(NoSpaceLeftError, match=f"no space left on {tmp_path}") as err:
        with reporting_full_disk(tmp_path / "log.csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)


# ---- #13: checkpoints say which model they hold -------------------------------------------------


def test_segment_reads_model_and_classes_from_the_checkpoint(fcn32s_5, image, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(image), "--weights", str(fcn32s_5), "-o", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "with FCN32s" in captured.out, captured
    with Image.open(out / "img_label.png") as label:
        assert np.asarray(label).max() < 5
    wrapped = tmp_path / "wrapped.pth"  # {"state_dict": ...}, as many trainers save it
    torch.save({"state_dict": torch.load(fcn32s_5, weights_only=True), "epoch": 3}, wrapped)
    assert main(["segment", str(image), "--weights", str(wrapped), "-o", str(out), "--device", "cpu"]) == 0
    fails(capsys, ["segment", str(image), "--weights", str(fcn32s_5), "--model", "fcn8s", "-o", str(out)],
           "holds a voc-fcn32s model, not voc-fcn8s")
    fails(capsys, ["segment", str(image), "--weights", str(fcn32s_5), "--num-classes", "21", "-o", str(out)],
           "has 5 classes, not 21")


def test_bench_reads_model_and_classes_from_the_checkpoint(fcn32s_5, tmp_path, monkeypatch, capsys):
    import fcnfast.benchmark as benchmark

    seen = {}

    class Stop(Exception):
        pass

    def capture(cfg, progress):
        seen.update(model=cfg.model, num_classes=cfg.num_classes)
        raise Stop

    monkeypatch.setattr(benchmark, "run_benchmark", capture)
    with pytest.raises(Stop):
        main(["bench", "--weights", str(fcn32s_5), "--size", "16", "--device", "cpu", "--out", str(tmp_path)])
    assert seen == {"model": "voc-fcn32s", "num_classes": 5}


@pytest.mark.parametrize("name, reads", [("siftflow-fcn32s", "reads color and gives semantic, geometric labels"),
                                         ("nyud-fcn32s-color-hha", "reads color and hha"),
                                         ("nyud-fcn32s-color-d", "reads color+depth")])
def test_segment_refuses_a_network_that_does_not_read_one_photo(name, reads, image, tmp_path, capsys):
    fails(capsys, ["segment", str(image), "--model", name, "-o", str(tmp_path / "out"), "--device", "cpu"],
          f"turns RGB photos into one label map each; {name} {reads}", "fcnfast evaluate --dataset")
    assert not (tmp_path / "out").exists()


def test_segment_a_folder_segments_every_image_in_it(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("b.jpg", "a.PNG"):
        Image.fromarray(np.full((12, 14, 3), 90, np.uint8)).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["segment", str(photos), "-o", str(out), "--device", "cpu", "--model", "fcn32s"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_label.png", "a_overlay.png", "b_label.png", "b_overlay.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(capsys, ["segment", str(empty), "-o", str(out)], empty, "is a folder without images")
