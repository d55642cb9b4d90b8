"""fcnfast.data: VOC-format loading, Caffe preprocessing, augmentation, batching, toy data."""

import argparse
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fcnfast.data import (
    IGNORE_INDEX,
    MEAN_BGR,
    VOC_CLASSES,
    RandomFlipScale,
    VOCSegmentation,
    make_toy_dataset,
    pad_collate,
    preprocess,
    to_image,
    voc_colormap,
)

MEAN_B, MEAN_G, MEAN_R = 104.00698793, 116.66876762, 122.67891434


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    info = make_toy_dataset(root, num_train=3, num_val=2, size=(40, 56), seed=0)
    return root, info


@pytest.fixture
def small(tmp_path):
    """A fresh dataset per test, for the tests that break it."""
    root = tmp_path / "voc"
    make_toy_dataset(root, num_train=2, num_val=1, size=(24, 32), seed=1)
    return root


def _msg(path):
    return re.escape(str(path))


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------


def test_preprocess_bgr_order_and_mean():
    assert MEAN_BGR == (MEAN_B, MEAN_G, MEAN_R)
    rgb = np.array([[[10, 20, 30], [255, 0, 128]]], dtype=np.uint8)  # 1x2 image
    x = preprocess(rgb)
    assert x.dtype == torch.float32 and x.shape == (3, 1, 2) and x.is_contiguous()
    expected = torch.tensor([[30 - MEAN_B, 128 - MEAN_B], [20 - MEAN_G, 0 - MEAN_G], [10 - MEAN_R, 255 - MEAN_R]])
    torch.testing.assert_close(x[:, 0, :], expected.float())
    assert np.array_equal(to_image(x), rgb)
    assert np.array_equal(to_image(x[None]), rgb)  # batched (1, 3, H, W) too
    assert np.array_equal(to_image(preprocess(Image.fromarray(rgb))), rgb)  # PIL input
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*\(2, 2\)"):
        preprocess(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="to_image"):
        to_image(torch.zeros(4, 2, 2))


def test_dataset_items(toy):
    root, info = toy
    ds = VOCSegmentation(root, "train")
    assert len(ds) == 3 and len(VOCSegmentation(root, "val")) == 2 and len(VOCSegmentation(root, "trainval")) == 5
    assert ds.ids == info["splits"]["train"]
    assert ds.class_names == VOC_CLASSES and len(VOC_CLASSES) == 21
    assert VOC_CLASSES[0] == "background" and VOC_CLASSES[-1] == "tvmonitor"
    seen = set()
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.dtype == torch.float32 and image.shape == (3, 40, 56)
        assert label.dtype == torch.int64 and label.shape == (40, 56)
        values = set(label.unique().tolist())
        assert values <= set(range(21)) | {IGNORE_INDEX}
        assert IGNORE_INDEX in values and 0 in values and len(values - {0, IGNORE_INDEX}) >= 1
        seen |= values
    assert len(seen) >= 4


def test_known_pixel_matches_jpeg_bgr_minus_mean(toy):
    root, _ = toy
    ds = VOCSegmentation(root, "val")
    image, label = ds[1]
    with Image.open(ds.image_path(1)) as im:
        rgb = np.asarray(im.convert("RGB"))
    for y, x in [(0, 0), (17, 31), (39, 55)]:
        r, g, b = (float(v) for v in rgb[y, x])
        torch.testing.assert_close(image[:, y, x], torch.tensor([b - MEAN_B, g - MEAN_G, r - MEAN_R]))
    with Image.open(ds.label_path(1)) as im:
        assert im.mode == "P"
        assert np.array_equal(label.numpy(), np.asarray(im))
        assert np.array_equal(np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)[:256], voc_colormap())
    assert np.array_equal(to_image(image), rgb)


def test_voc_colormap_matches_imgviz():
    imgviz = pytest.importorskip("imgviz")
    cmap = voc_colormap()
    assert np.array_equal(cmap, imgviz.label_colormap())
    assert cmap[255].tolist() == [224, 224, 192]


# ---------------------------------------------------------------------------------------------
# Toy dataset generator and CLI
# ---------------------------------------------------------------------------------------------


def test_toy_dataset_deterministic(tmp_path):
    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    make_toy_dataset(tmp_path / "a", num_train=2, num_val=1, seed=5)
    make_toy_dataset(tmp_path / "b", num_train=2, num_val=1, seed=5)
    make_toy_dataset(tmp_path / "c", num_train=2, num_val=1, seed=6)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(a) == 3 + 3 + 3  # jpgs, pngs, split files
    assert a == b
    assert a != c


def test_toy_dataset_random_sizes_and_class_count(tmp_path):
    info = make_toy_dataset(tmp_path, num_train=6, num_val=0, min_size=(20, 30), max_size=(40, 50), num_classes=4)
    sizes = list(info["sizes"].values())
    assert all(20 <= h <= 40 and 30 <= w <= 50 for h, w in sizes)
    assert len(set(sizes)) > 1
    ds = VOCSegmentation(tmp_path, "train", num_classes=4)
    assert ds.class_names == ("class0", "class1", "class2", "class3")
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape[1:] == label.shape == sizes[i]
        assert set(label.unique().tolist()) <= {0, 1, 2, 3, 255}
    assert (tmp_path / "ImageSets" / "Segmentation" / "val.txt").read_text() == ""
    with pytest.raises(ValueError, match="either size or min_size"):
        make_toy_dataset(tmp_path, size=(32, 32), min_size=16, max_size=40)
    with pytest.raises(ValueError, match="num_classes"):
        make_toy_dataset(tmp_path, num_classes=256)


def test_toy_dataset_is_learnable(toy):
    """A per-pixel linear classifier on colour alone must cut the loss a lot (class <-> colour)."""
    root, _ = toy
    ds = VOCSegmentation(root, "trainval")
    images, labels, _ = pad_collate([ds[i] for i in range(len(ds))])
    keep = labels != IGNORE_INDEX
    pixels, targets = images.permute(0, 2, 3, 1)[keep] / 64, labels[keep]
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(targets), generator=g)[:2000]
    pixels, targets = pixels[pick], targets[pick]
    weight = torch.zeros(21, 3, requires_grad=True)
    bias = torch.zeros(21, requires_grad=True)
    first = F.cross_entropy(F.linear(pixels, weight, bias), targets).item()  # = log(21)
    for _ in range(100):  # plain gradient descent (torch.optim's first step imports a lot)
        loss = F.cross_entropy(F.linear(pixels, weight, bias), targets)
        loss.backward()
        with torch.no_grad():
            for p in (weight, bias):
                p -= 2.0 * p.grad
                p.grad = None
    last = F.cross_entropy(F.linear(pixels, weight, bias), targets).item()
    assert last < 0.3 * first, (first, last)


def test_cli_make_toy_dataset(tmp_path, capsys):
    from fcnfast.commands import make_toy_dataset as cmd

    parser = argparse.ArgumentParser(prog="fcnfast")
    cmd.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(["make-toy-dataset", str(out), "--train", "2", "--val", "1", "--size", "24", "40", "--seed", "3"])
    assert args.func is cmd.run
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert str(out) in text and "24x40" in text
    assert len(VOCSegmentation(out, "train")) == 2
    assert VOCSegmentation(out, "val")[0][1].shape == (24, 40)

    from fcnfast.commands._errors import run_command

    args = parser.parse_args(["make-toy-dataset", str(tmp_path / "cli2"), "--size", "24", "40",
                              "--min-size", "8", "8", "--max-size", "9", "9"])
    assert run_command("make-toy-dataset", args.func, args) == 2
    assert "error" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Batching and augmentation
# ---------------------------------------------------------------------------------------------


def test_pad_collate_different_sizes():
    a = (torch.randn(3, 5, 7), torch.randint(0, 21, (5, 7)))
    b = (torch.randn(3, 8, 4), torch.randint(0, 21, (8, 4)))
    images, labels, sizes = pad_collate([a, b])
    assert images.shape == (2, 3, 8, 7) and images.dtype == torch.float32
    assert labels.shape == (2, 8, 7) and labels.dtype == torch.int64
    assert sizes == [(5, 7), (8, 4)]
    assert torch.equal(images[0, :, :5, :7], a[0]) and torch.equal(images[1, :, :8, :4], b[0])
    assert torch.equal(labels[0, :5, :7], a[1]) and torch.equal(labels[1, :8, :4], b[1])
    assert (images[0, :, 5:, :] == 0).all() and (images[1, :, :, 4:] == 0).all()
    assert (labels[0, 5:, :] == IGNORE_INDEX).all() and (labels[1, :, 4:] == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="sample 1"):
        pad_collate([a, (torch.randn(3, 8, 4), torch.zeros(8, 5, dtype=torch.long))])


def test_pad_collate_with_dataloader(toy):
    root, _ = toy
    ds = VOCSegmentation(root, "trainval", transform=RandomFlipScale(scales=(0.5, 1.5), seed=0))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=pad_collate)
    images, labels, sizes = next(iter(loader))
    assert images.shape[0] == 3 and images.shape[2:] == labels.shape[1:]
    assert images.shape[2] == max(h for h, _ in sizes) and images.shape[3] == max(w for _, w in sizes)


def _blocky_pair(h=48, w=64, block=8, seed=0):
    """Label of 8x8 blocks of random classes; the image's channels encode the label exactly."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 21, (h // block, w // block), generator=g)
    label = blocks.repeat_interleave(block, 0).repeat_interleave(block, 1)
    label[:2, :5] = IGNORE_INDEX
    image = torch.stack([label.float(), -label.float(), torch.zeros_like(label, dtype=torch.float32)])
    return image, label


def _agreement(image, label):
    return (image[0] - label.float()).abs().lt(1e-3).float().mean().item()


def test_random_flip_scale_keeps_image_and_label_aligned():
    image, label = _blocky_pair()
    aug = RandomFlipScale(flip=True, scales=(0.5, 2.0), seed=0)
    flipped = unflipped = 0
    shapes = set()
    for _ in range(12):
        im, lb = aug(image, label)
        assert im.shape[1:] == lb.shape and im.dtype == torch.float32 and lb.dtype == torch.int64
        assert set(lb.unique().tolist()) <= set(label.unique().tolist())  # nearest: no new values
        shapes.add(tuple(lb.shape))
        # Bilinear only blends across block edges; everywhere else image == label.
        assert _agreement(im, lb) > 0.75, _agreement(im, lb)
        assert _agreement(im.flip(-1), lb) < 0.5  # a one-sided flip would be caught
        # Flipped iff the top-left ignore patch moved to the right.
        if (lb[: lb.shape[0] // 16 + 1, -1] == IGNORE_INDEX).any():
            flipped += 1
        elif (lb[0, 0] == IGNORE_INDEX).item():
            unflipped += 1
    assert flipped > 0 and unflipped > 0 and flipped + unflipped == 12
    assert len(shapes) > 3


def test_random_flip_scale_seeded_and_flip_only():
    image, label = _blocky_pair(seed=1)
    a, b = RandomFlipScale(seed=7), RandomFlipScale(seed=7)
    for _ in range(4):
        (ia, la), (ib, lb) = a(image, label), b(image, label)
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    only_flip = RandomFlipScale(flip=True, scales=None, seed=0)
    outs = [only_flip(image, label) for _ in range(20)]
    assert all(lb.shape == label.shape for _, lb in outs)
    assert any(torch.equal(lb, label.flip(-1)) for _, lb in outs) and any(torch.equal(lb, label) for _, lb in outs)
    assert all(torch.equal(im[0], lb.float()) for im, lb in outs)
    identity = RandomFlipScale(flip=False, scales=None)
    im, lb = identity(image, label)
    assert torch.equal(im, image) and torch.equal(lb, label)
    with pytest.raises(ValueError, match="scales"):
        RandomFlipScale(scales=(2.0, 1.0))
    with pytest.raises(ValueError, match=r"\(3, 4, 4\).*\(4, 5\)"):
        identity(torch.zeros(3, 4, 4), torch.zeros(4, 5, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# Errors: each names the offending file
# ---------------------------------------------------------------------------------------------


def _first_id(root, split="train"):
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()[0]


def test_missing_root_and_split_file(tmp_path, small):
    with pytest.raises(FileNotFoundError, match=_msg(tmp_path / "nope")):
        VOCSegmentation(tmp_path / "nope")
    split = small / "ImageSets" / "Segmentation" / "test.txt"
    with pytest.raises(FileNotFoundError, match=_msg(split)):
        VOCSegmentation(small, "test")


def test_missing_image(small):
    path = small / "JPEGImages" / f"{_first_id(small)}.jpg"
    path.unlink()
    with pytest.raises(FileNotFoundError, match=_msg(path)):
        VOCSegmentation(small, "train")


def test_missing_label(small):
    path = small / "SegmentationClass" / f"{_first_id(small)}.png"
    path.unlink()
    with pytest.raises(FileNotFoundError, match=_msg(path)):
        VOCSegmentation(small, "train")


def test_file_removed_after_construction(small):
    ds = VOCSegmentation(small, "train")
    ds.image_path(1).unlink()
    with pytest.raises(FileNotFoundError, match=_msg(ds.image_path(1))):
        ds[1]


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_corrupt_jpeg(small, how):
    path = small / "JPEGImages" / f"{_first_id(small)}.jpg"
    data = path.read_bytes()
    path.write_bytes(b"this is not a jpeg\x00\xff" * 20 if how == "garbage" else data[: len(data) // 2])
    ds = VOCSegmentation(small, "train")
    with pytest.raises(ValueError, match=_msg(path)):
        ds[0]
    ds[1]  # the other images still load


def test_wrong_palette_values(small):
    path = small / "SegmentationClass" / f"{_first_id(small)}.png"
    with Image.open(path) as im:
        arr = np.array(im)
        palette = im.getpalette()
    arr[3:6, 3:6] = 30  # not a VOC class, not 255
    bad = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    bad.putpalette(palette)
    bad.save(path)
    ds = VOCSegmentation(small, "train")
    with pytest.raises(ValueError, match=_msg(path) + r".*\[30\]"):
        ds[0]
    # ...but it is fine when the dataset declares enough classes.
    _, label = VOCSegmentation(small, "train", num_classes=31)[0]
    assert (label[3:6, 3:6] == 30).all()


def test_rgb_label_rejected_and_grayscale_label_accepted(small):
    ds = VOCSegmentation(small, "train")
    path = ds.label_path(0)
    with Image.open(path) as im:
        arr = np.array(im)
        rgb = im.convert("RGB")
    rgb.save(path)
    with pytest.raises(ValueError, match=_msg(path) + ".*mode 'RGB'"):
        ds[0]
    Image.fromarray(arr).save(path)  # mode 'L', same indices
    assert np.array_equal(ds[0][1].numpy(), arr)


def test_label_image_size_mismatch(small):
    ds = VOCSegmentation(small, "train")
    path = ds.label_path(0)
    with Image.open(path) as im:
        im.crop((0, 0, 20, 24)).save(path)
    # Sizes are written HxW, as everywhere in fcnfast (issue 11 #15).
    with pytest.raises(ValueError, match=_msg(path) + r" is 24x20 \(HxW\).*" + _msg(ds.image_path(0)) + ".*24x32"):
        ds[0]
