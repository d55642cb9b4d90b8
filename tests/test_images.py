"""fcnfast.images: the one label-PNG writer (segment and evaluation predictions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fcnfast.data import voc_colormap
from fcnfast.images import save_label_png, shrink_to


def test_save_prediction_writes_a_voc_palette_png(tmp_path):
    label = np.array([[0, 1, 2], [255, 20, 0]], dtype=np.int64)
    save_label_png(tmp_path / "p.png", torch.from_numpy(label))
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P" and np.array_equal(np.asarray(im), label)
        assert np.array_equal(np.asarray(im.convert("RGB"))[0, 1], voc_colormap()[1])


def test_labels_beyond_the_palette_keep_their_values(tmp_path):
    label = np.array([[0, 300], [1000, 7]], dtype=np.int64)
    save_label_png(tmp_path / "wide.png", label)
    with Image.open(tmp_path / "wide.png") as im:
        assert np.array_equal(np.asarray(im).astype(np.int64), label)


@pytest.mark.parametrize("label, message", [
    (np.zeros((2, 2, 3), np.int64), "expected an \\(H, W\\) label map"),
    (np.array([[0, -1]]), "0..65535"),
])
def test_save_label_png_rejects_what_it_cannot_write(tmp_path, label, message):
    with pytest.raises(ValueError, match=message):
        save_label_png(tmp_path / "bad.png", label)


def test_shrink_to_keeps_the_aspect_ratio():
    rgb = np.zeros((375, 500, 3), np.uint8)
    assert shrink_to(rgb, 48).shape == (36, 48, 3)
    assert shrink_to(rgb, None) is rgb and shrink_to(rgb, 500) is rgb
