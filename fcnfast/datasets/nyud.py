"""NYUDv2 in the release's layout (the nyud-fcn32s-* networks): colour, HHA, depth, 40 classes.

    {split}.txt                     ids of the split (the release: train, val, test; trainval = both)
    data/images/img_{id}.png        colour image
    data/hha/img_{id}.png           HHA: the depth encoded as horizontal disparity, height above
                                    ground and angle with gravity (Gupta et al., ECCV 2014)
    data/depth/img_{id}.png         depth map, one channel
    segmentation/img_{id}.mat       variable ``segmentation``: 0 void, 1..40 the classes

The split files are Gupta et al.'s 795 training (train + val) and 654 test images. As the release's
data layer does: colour becomes BGR minus :data:`MEAN_COLOR_BGR`, HHA keeps its channel order minus
:data:`MEAN_HHA`, depth becomes ``log(depth) - MEAN_LOG_DEPTH`` (a zero depth, a hole, is read as 1
so its log stays finite), and labels are shifted down by one so that the classes are 0..39 and
void becomes 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

from .base import SegmentationDataset
from .common import preprocess, subtract_mean
from .decode import read_depth, read_image, shift_void
from .matfile import read_mat_array

__all__ = ["NYUD_CLASSES", "NYUDSegmentation", "MEAN_COLOR_BGR", "MEAN_HHA", "MEAN_LOG_DEPTH", "LABEL_VARIABLE"]

#: The 40 classes of Gupta et al.'s task, in the networks' output order (the release's classes.txt).
NYUD_CLASSES: Tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes",
    "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard",
    "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture",
    "otherprop",
)  # fmt: skip
#: The release's means: colour (BGR), HHA (as stored) and log depth.
MEAN_COLOR_BGR: Tuple[float, float, float] = (116.190, 97.203, 92.318)
MEAN_HHA: Tuple[float, float, float] = (132.431, 94.076, 118.477)
MEAN_LOG_DEPTH: Tuple[float] = (7.844,)
#: The variable of the label .mat files.
LABEL_VARIABLE = "segmentation"


class NYUDSegmentation(SegmentationDataset):
    """A split of NYUDv2 in the release's layout (module docstring). ``modalities`` picks the inputs
    ("color", "hha", "depth") in channel order: ("color", "depth") is the 4-channel input of
    nyud-fcn32s-color-d, ("color", "hha") the two inputs of nyud-fcn32s-color-hha."""

    name = "nyud"
    label_classes = {"semantic": NYUD_CLASSES}
    modalities_available = ("color", "hha", "depth")
    default_splits = ("trainval", "test")

    def split_path(self) -> Path:
        return self.root / f"{self.split}.txt"

    def files(self, image_id: str) -> Dict[str, Path]:
        data = self.root / "data"
        return {"color": data / "images" / f"img_{image_id}.png", "hha": data / "hha" / f"img_{image_id}.png",
                "depth": data / "depth" / f"img_{image_id}.png",
                "semantic": self.root / "segmentation" / f"img_{image_id}.mat"}

    def load_input(self, modality: str, path: Path) -> torch.Tensor:
        if modality == "color":
            return preprocess(read_image(path), MEAN_COLOR_BGR)
        if modality == "hha":
            return subtract_mean(read_image(path), MEAN_HHA)
        return subtract_mean(np.log(np.maximum(read_depth(path), 1.0)), MEAN_LOG_DEPTH)

    def load_label(self, label: str, path: Path) -> np.ndarray:
        return shift_void(read_mat_array(path, LABEL_VARIABLE), f"label {path}")
