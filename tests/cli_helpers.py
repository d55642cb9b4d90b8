"""Helpers of the CLI tests: run a command that must fail, and a tiny training command line."""

from __future__ import annotations

from fcnfast.cli import main

NUM_CLASSES = 3


def fails(capsys, argv, *needles):
    """Run ``fcnfast ARGV``: it must exit 2 with one ``error:`` line, the last on stderr, holding
    every needle, and no traceback. Returns stderr."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and err.strip().splitlines()[-1].startswith(f"fcnfast {argv[0]}: error: "), err
    assert "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in err, err
    return err


def train_args(data, out, *extra):
    """One tiny step of FCN-32s on the CPU (more with ``extra``, which overrides)."""
    return ["train", "--data", str(data), "--out", str(out), "--model", "fcn32s", "--preset", "modern",
            "--num-classes", str(NUM_CLASSES), "--batch-size", "1", "--iterations", "1", "--val-every", "0",
            "--num-workers", "0", "--quiet", "--device", "cpu", *extra]


def small_toy(tmp_path_factory):
    """A 3-class toy VOC dataset of 2 training and 1 validation images of 16x20 (HxW)."""
    from fcnfast.data import make_toy_dataset

    root = tmp_path_factory.mktemp("toy") / "voc"
    make_toy_dataset(root, num_train=2, num_val=1, size=(16, 20), num_classes=NUM_CLASSES, seed=0)
    return root
