"""The one image reader (fcnfast.images.read_image): EXIF orientation and every Pillow mode (issue 11 #4, #5)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fcnfast.cli import main
from fcnfast.data import VOCSegmentation, make_toy_dataset
from fcnfast.images import read_image

# Every mode Pillow can write to a file format it also reads back, and where it goes.
MODE_FILES = {"1": "png", "L": "png", "P": "png", "RGB": "png", "RGBA": "png", "LA": "png", "I": "tif",
              "I;16": "png", "I;16B": "tif", "CMYK": "jpg", "YCbCr": "jpg", "F": "tif",
              "RGBX": "tif", "LAB": "tif", "HSV": None, "La": None, "RGBa": None, "PA": None}


def _grey_ramp(dtype, top):
    return (np.linspace(0, top, 24 * 32).reshape(24, 32)).round().astype(dtype)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    """Pillow's own conversion clips 16-bit values at 255: 99.9% of a photo turns white."""
    path = tmp_path / "depth.png"
    values = _grey_ramp(np.uint16, 65535)
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I")  # what the reader meets
    rgb = read_image(path)
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8
    expected = np.round(values / 257.0).astype(np.uint8)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert (rgb == 255).mean() < 0.01 and rgb[..., 0].std() > 60
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize("mode", [m for m, fmt in MODE_FILES.items() if fmt is not None])
def test_every_mode_is_read_as_rgb(tmp_path, mode):
    base = Image.fromarray(_grey_ramp(np.uint8, 255)).convert("RGB")
    if mode == "F":
        Image.fromarray(_grey_ramp(np.float32, 1.0)).save(tmp_path / "x.tif")
        with pytest.raises(ValueError, match="x.tif.*floating-point pixels"):
            read_image(tmp_path / "x.tif")
        return
    if mode == "I;16":
        image = Image.fromarray(_grey_ramp(np.uint16, 65535))
    elif mode == "I;16B":  # big-endian 16-bit (TIFF); Pillow's convert() would clip at 255
        image = Image.frombytes(mode, (32, 24), _grey_ramp(np.uint16, 65535).astype(">u2").tobytes())
    elif mode == "I":
        image = Image.fromarray(_grey_ramp(np.int32, 65535))
    else:
        image = base.convert(mode)
    path = tmp_path / f"x.{MODE_FILES[mode]}"
    try:
        image.save(path)
    except (OSError, ValueError, KeyError) as exc:
        pytest.skip(f"Pillow cannot write mode {mode} as {path.suffix}: {exc}")
    rgb = read_image(path)
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8
    if mode not in ("1", "CMYK", "YCbCr", "LAB"):  # lossy or thresholded conversions
        grey = rgb.astype(int).mean(axis=2)
        assert abs(grey[-1, -1] - 255) <= 2 and grey[0, 0] <= 2, (grey[0, 0], grey[-1, -1])


def _photo_with_orientation(path, orientation):
    """A 20 (H) x 30 (W) photo whose top-left quarter is red, stored with an EXIF orientation."""
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:10, :15, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif.tobytes())
    return rgb


@pytest.mark.parametrize("orientation, turn", [(1, lambda a: a), (3, lambda a: np.rot90(a, 2)),
                                               (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1))])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    """As every image viewer shows it: orientation 6 is a photo taken with the camera turned."""
    stored = _photo_with_orientation(tmp_path / "photo.png", orientation)
    assert np.array_equal(read_image(tmp_path / "photo.png"), turn(stored))


def test_segment_and_the_datasets_read_turned_images(tmp_path, capsys):
    _photo_with_orientation(tmp_path / "photo.png", 6)  # stored 20x30 (HxW), shown 30x20
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "photo.png"), "-o", str(out), "--device", "cpu"]) == 0, capsys.readouterr().err
    with Image.open(out / "photo_label.png") as label:
        assert label.size == (20, 30)  # PIL sizes are (W, H): the label is 30 high, as the photo is shown
    assert "photo: 30x20" in capsys.readouterr().out  # sizes are printed HxW

    root = tmp_path / "voc"
    make_toy_dataset(root, num_train=1, num_val=0, size=(16, 24), num_classes=3)
    image = root / "JPEGImages" / "toy_000000.jpg"
    with Image.open(image) as im:
        pixels = np.asarray(im)
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(np.ascontiguousarray(np.rot90(pixels, -1))).save(image, exif=exif.tobytes(), quality=95)
    sample, label = VOCSegmentation(root, "train", num_classes=3)[0]
    assert tuple(sample.shape[1:]) == tuple(label.shape) == (16, 24)  # turned back to the label's orientation
