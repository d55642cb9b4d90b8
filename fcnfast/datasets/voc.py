"""PASCAL VOC in its own layout (the release's voc-* networks; SBD converted to it works too).

    JPEGImages/{id}.jpg
    SegmentationClass/{id}.png      palette ('P') or grayscale ('L') PNG; pixel value = class index
    ImageSets/Segmentation/{split}.txt   one id per line

Labels are 0..20 (background and the 20 VOC classes) and 255 on object boundaries (ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ..images import voc_colormap
from .base import PathLike, SegmentationDataset, Transform
from .common import MEAN_BGR, preprocess
from .decode import read_image, read_label

__all__ = ["VOC_CLASSES", "VOCSegmentation", "class_names_for", "voc_colormap"]

#: PASCAL VOC class names, index = label value.
VOC_CLASSES: Tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def class_names_for(num_classes: int) -> Tuple[str, ...]:
    """VOC_CLASSES for 21 classes, else ``("class0", "class1", ...)``."""
    if num_classes == len(VOC_CLASSES):
        return VOC_CLASSES
    return tuple(f"class{i}" for i in range(num_classes))


class VOCSegmentation(SegmentationDataset):
    """A VOC-format segmentation split (see the module docstring for the layout).

    ``ds[i]`` returns ``(image, label)``: image float32 (3, H, W) = BGR - MEAN_BGR,
    label int64 (H, W) with values in 0..num_classes-1 or 255. ``num_classes`` (default 21)
    may be anything in 1..255, for VOC-format datasets of other classes (the toy dataset).
    Errors are those of :class:`fcnfast.datasets.base.SegmentationDataset`.
    """

    name = "voc"
    label_classes = {"semantic": VOC_CLASSES}

    def __init__(self, root: PathLike, split: str = "train", *, transform: Optional[Transform] = None,
                 num_classes: int = 21, **options) -> None:
        if not 1 <= int(num_classes) <= 255:
            raise ValueError(f"VOCSegmentation: num_classes must be in 1..255, got {num_classes}")
        super().__init__(root, split, transform=transform, num_classes=int(num_classes), **options)

    def names_of(self, label: str) -> Tuple[str, ...]:
        return class_names_for(self.class_counts[0])

    def split_path(self) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{self.split}.txt"

    def files(self, image_id: str) -> Dict[str, Path]:
        return {"color": self.root / "JPEGImages" / f"{image_id}.jpg",
                "semantic": self.root / "SegmentationClass" / f"{image_id}.png"}

    def image_path(self, i: int) -> Path:
        return self.path(i, "color")

    def label_path(self, i: int) -> Path:
        return self.path(i, "semantic")

    def load_input(self, modality: str, path: Path) -> torch.Tensor:
        return preprocess(read_image(path), MEAN_BGR)

    def load_label(self, label: str, path: Path) -> np.ndarray:
        return read_label(path, None)
