"""The release's other datasets (NYUDv2, SIFT Flow, PASCAL-Context) read as its data layers read
them, on toy datasets written in their layouts; the MAT-file reader; batching of multi-input,
multi-label samples."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnfast.cli import main
from fcnfast.datasets import (
    DATASETS, TOY_DATASETS, MatFileError, RandomFlipScale, dataset_class, make_toy_nyud, make_toy_pascalcontext,
    make_toy_siftflow, open_dataset, pad_collate, read_mat_array, write_mat,
)
from fcnfast.datasets import nyud, pascalcontext, siftflow
from fcnfast.models.layout import LAYOUTS

FIXTURES = Path(__file__).parent / "release"


# ---------------------------------------------------------------------------------------------
# MAT-files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scipy_plain.mat", "scipy_compressed.mat"])
def test_mat_reader_reads_files_another_writer_wrote(name):
    """Written by scipy.io.savemat, with a cell array and a struct beside the numeric variables."""
    path = FIXTURES / name
    s = read_mat_array(path, "S")
    assert s.dtype == np.float64 and s.shape == (5, 7) and np.array_equal(s, np.arange(35).reshape(5, 7) - 1.0)
    seg = read_mat_array(path, "segmentation")
    assert seg.dtype == np.uint8 and np.array_equal(seg, (np.arange(54) % 41).astype(np.uint8).reshape(6, 9))
    labels = read_mat_array(path, "LabelMap")
    assert labels.dtype == np.uint16 and np.array_equal(labels, (np.arange(20, dtype=np.uint16) * 23).reshape(4, 5))
    with pytest.raises(MatFileError, match="'names' is not a real numeric array"):
        read_mat_array(path, "names")


def test_mat_writer_round_trips(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.int32).reshape(3, 4), "b": np.array([[1.5, -2.0]]),
              "c": np.arange(6, dtype=np.uint16).reshape(2, 3)}
    write_mat(tmp_path / "x.mat", arrays)
    for key, value in arrays.items():
        got = read_mat_array(tmp_path / "x.mat", key)
        assert got.dtype == value.dtype and np.array_equal(got, value)


def test_mat_reader_errors_name_the_file(tmp_path):
    write_mat(tmp_path / "x.mat", {"a": np.zeros((2, 2))})
    with pytest.raises(MatFileError, match=re.escape(str(tmp_path / "x.mat")) + r".*no variable 'S' \(it has a\)"):
        read_mat_array(tmp_path / "x.mat", "S")
    (tmp_path / "h5.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(512, b" ") + b"\x89HDF\r\n")
    with pytest.raises(MatFileError, match=r"7\.3 \(HDF5\).*save\(f, '-v7'\)"):
        read_mat_array(tmp_path / "h5.mat", "S")
    (tmp_path / "txt.mat").write_text("not a mat file at all" * 10)
    with pytest.raises(MatFileError, match="not a MATLAB level-5 MAT-file"):
        read_mat_array(tmp_path / "txt.mat", "S")
    with pytest.raises(FileNotFoundError, match="MAT-file not found"):
        read_mat_array(tmp_path / "nope.mat", "S")


# ---------------------------------------------------------------------------------------------
# The datasets and the models they feed
# ---------------------------------------------------------------------------------------------


def test_every_model_reads_its_dataset():
    for name, layout in LAYOUTS.items():
        reader = dataset_class(layout.dataset)
        assert set(layout.modalities) <= set(reader.modalities_available), name
        counts = tuple(len(reader.label_classes[label]) for label in layout.labels)
        assert counts == tuple(task.num_classes for task in layout.tasks), name
    assert tuple(DATASETS) == tuple(TOY_DATASETS) == ("voc", "pascalcontext", "nyud", "siftflow")
    with pytest.raises(ValueError, match="unknown dataset 'coco'; choose from voc, pascalcontext, nyud, siftflow"):
        open_dataset("coco", ".")


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    root = tmp_path_factory.mktemp("toys")
    return {"nyud": make_toy_nyud(root / "nyud", 2, 1, (20, 28)), "siftflow": make_toy_siftflow(root / "sf", 2, 1, (24, 24)),
            "pascalcontext": make_toy_pascalcontext(root / "pc", 2, 1, (20, 30))}


def test_nyud_reads_every_modality_as_the_release_does(toys):
    root = toys["nyud"]["root"]
    image_id = toys["nyud"]["splits"]["trainval"][0]
    rgb = np.asarray(Image.open(root / "data" / "images" / f"img_{image_id}.png"), dtype=np.float32)
    hha = np.asarray(Image.open(root / "data" / "hha" / f"img_{image_id}.png"), dtype=np.float32)
    depth = np.asarray(Image.open(root / "data" / "depth" / f"img_{image_id}.png"), dtype=np.float32)
    raw = read_mat_array(root / "segmentation" / f"img_{image_id}.mat", "segmentation")
    ds = open_dataset("nyud", root, modalities=("color", "hha", "depth"))
    assert ds.split == "trainval" and ds.ids[0] == image_id
    image, label = ds[0]
    assert image.shape == (7, 20, 28) and label.shape == (20, 28) and label.dtype == torch.int64
    y, x = 5, 7
    expect = [rgb[y, x, 2] - 116.190, rgb[y, x, 1] - 97.203, rgb[y, x, 0] - 92.318,
              hha[y, x, 0] - 132.431, hha[y, x, 1] - 94.076, hha[y, x, 2] - 118.477, math.log(depth[y, x]) - 7.844]
    torch.testing.assert_close(image[:, y, x], torch.tensor(expect), rtol=0, atol=1e-4)
    shifted = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    assert np.array_equal(label.numpy(), shifted) and (label == 255).any() and label[label != 255].max() < 40
    assert open_dataset("nyud", root, "test", modalities=("color", "depth"))[0][0].shape[0] == 4
    assert ds.class_names[:3] == ("wall", "floor", "cabinet") and len(ds.class_names) == 40


def test_nyud_checks_only_the_files_it_reads(toys, tmp_path):
    root = make_toy_nyud(tmp_path / "nyud", 1, 0, (16, 16))["root"]
    missing = root / "data" / "hha" / "img_0001.png"
    missing.unlink()
    open_dataset("nyud", root, modalities=("color", "depth"))
    with pytest.raises(FileNotFoundError, match=r"hha file not found: " + re.escape(str(missing))):
        open_dataset("nyud", root, modalities=("color", "hha"))
    with pytest.raises(ValueError, match="nyud holds the inputs color, hha, depth; cannot load lidar"):
        open_dataset("nyud", root, modalities=("lidar",))
    Image.fromarray(np.zeros((8, 16), np.uint16) + 900).save(root / "data" / "depth" / "img_0001.png")
    with pytest.raises(ValueError, match=r"img_0001\.png is 8x16 \(HxW\) but .*img_0001\.png is 16x16"):
        open_dataset("nyud", root, modalities=("color", "depth"))[0]


def test_siftflow_gives_both_label_sets(toys):
    root = toys["siftflow"]["root"]
    ds = open_dataset("siftflow", root)
    image_id = ds.ids[0]
    geo = read_mat_array(root / "GeoLabels" / siftflow.SCENES / f"{image_id}.mat", "S")
    sem = read_mat_array(root / "SemanticLabels" / siftflow.SCENES / f"{image_id}.mat", "S")
    assert (geo == -1).any() and (sem == 0).any()
    image, label = ds[0]
    assert image.shape == (3, 24, 24) and label.shape == (2, 24, 24)
    assert np.array_equal(label[0].numpy(), np.where(sem == 0, 255, sem - 1))
    assert np.array_equal(label[1].numpy(), np.where(geo <= 0, 255, geo - 1))
    assert ds.num_classes == (33, 3) and ds.names_of("geometric") == ("sky", "horizontal", "vertical")
    only = open_dataset("siftflow", root, "test", labels=("geometric",))
    assert only[0][1].shape == (24, 24) and only.class_names == ("sky", "horizontal", "vertical")
    with pytest.raises(ValueError, match="siftflow has the labels semantic, geometric; cannot load depth"):
        open_dataset("siftflow", root, labels=("depth",))


def test_pascalcontext_maps_full_labels_by_name(toys):
    root = toys["pascalcontext"]["root"]
    ds = open_dataset("pascalcontext", root, "val")
    full = read_mat_array(root / "trainval" / f"{ds.ids[0]}.mat", "LabelMap")
    names = [line.split(": ", 1)[1] for line in (root / "labels.txt").read_text().splitlines()]
    _, label = ds[0]
    # The release's mapping: a full label's name (spaces dropped) -> the task class of that name.
    to_task = {pascalcontext.TASK_RENAMES.get(n, n): k for k, n in enumerate(pascalcontext.PASCAL_CONTEXT_CLASSES) if k}
    assert set(np.unique(full)) - {0}, "the toy has labelled pixels"
    for value in np.unique(full):
        expect = to_task.get(names[value - 1].replace(" ", ""), 0) if value else 0
        assert (label.numpy()[full == value] == expect).all(), (value, expect)
    assert ds.class_names[11] == "diningtable" and len(ds.class_names) == 60 and not (label == 255).any()


def test_pascalcontext_names_a_task_class_missing_from_the_full_list(tmp_path):
    root = make_toy_pascalcontext(tmp_path / "pc", 1, 1, (16, 16))["root"]
    text = (root / "labels.txt").read_text().replace(": table\n", ": desk\n")
    (root / "labels.txt").write_text(text)
    with pytest.raises(ValueError, match=r"labels\.txt lacks the task classes \['diningtable'\]"):
        open_dataset("pascalcontext", root)


def test_batches_of_several_inputs_and_label_sets(toys):
    sf = open_dataset("siftflow", toys["siftflow"]["root"])
    flip = RandomFlipScale(scales=(0.5, 0.5), seed=0)
    image, label = flip(*sf[0])
    assert image.shape == (3, 12, 12) and label.shape == (2, 12, 12)
    small = (image, label)
    images, labels, sizes = pad_collate([small, sf[1]])
    assert images.shape == (2, 3, 24, 24) and labels.shape == (2, 2, 24, 24) and sizes == [(12, 12), (24, 24)]
    assert (labels[0, :, 12:, :] == 255).all()
    nyud_ds = open_dataset("nyud", toys["nyud"]["root"], modalities=("color", "hha"))
    assert pad_collate([nyud_ds[0], nyud_ds[1]])[0].shape == (2, 6, 20, 28)
    with pytest.raises(ValueError, match="sample 1"):
        pad_collate([sf[0], nyud_ds[0]])


@pytest.mark.parametrize("dataset, files", [
    ("nyud", ["trainval.txt", "test.txt", "data/hha/img_0001.png", "segmentation/img_0003.mat"]),
    ("siftflow", ["trainval.txt", f"GeoLabels/{siftflow.SCENES}/toy_scene001.mat"]),
    ("pascalcontext", ["labels.txt", "59_labels.txt", "VOC2010/ImageSets/Main/val.txt", "trainval/2010_000003.mat"]),
])
def test_make_toy_dataset_command_writes_each_layout(tmp_path, capsys, dataset, files):
    out = tmp_path / dataset
    argv = ["make-toy-dataset", str(out), "--dataset", dataset, "--train", "2", "--val", "1", "--size", "16", "20"]
    assert main(argv) == 0
    assert f"wrote toy {dataset} dataset" in capsys.readouterr().out
    for name in files:
        assert (out / name).is_file(), name
    assert len(open_dataset(dataset, out)) == 2
    assert main(["make-toy-dataset", str(out), "--dataset", dataset, "--num-classes", "5"]) == 2
    assert "takes --size only" in capsys.readouterr().err
