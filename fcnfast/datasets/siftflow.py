"""SIFT Flow in its distribution's layout (the siftflow-fcn* networks): 33 semantic and 3
geometric classes per pixel.

    {split}.txt                                            ids (the release: trainval 2,488, test 200)
    Images/spatial_envelope_256x256_static_8outdoorcategories/{id}.jpg
    SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/{id}.mat   variable ``S``:
                                                           0 void, 1..33 the classes
    GeoLabels/spatial_envelope_256x256_static_8outdoorcategories/{id}.mat        variable ``S``:
                                                           -1 or 0 void, 1..3 sky, horizontal, vertical

As the release's data layer does: the image becomes BGR minus :data:`MEAN_BGR`, and both label sets
are shifted down by one so that their classes start at 0 and void becomes 255. Three semantic
classes (cow, desert, moon) do not occur in the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

from .base import SegmentationDataset
from .common import preprocess
from .decode import read_image, shift_void
from .matfile import read_mat_array

__all__ = ["SIFTFLOW_SEMANTIC_CLASSES", "SIFTFLOW_GEOMETRIC_CLASSES", "SIFTFlowSegmentation", "MEAN_BGR",
           "LABEL_VARIABLE", "SCENES"]

#: The 33 semantic classes, in the networks' output order (the release's classes.txt).
SIFTFLOW_SEMANTIC_CLASSES: Tuple[str, ...] = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk", "desert", "door",
    "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole", "river", "road", "rock", "sand", "sea",
    "sidewalk", "sign", "sky", "staircase", "streetlight", "sun", "tree", "window",
)  # fmt: skip
SIFTFLOW_GEOMETRIC_CLASSES: Tuple[str, ...] = ("sky", "horizontal", "vertical")
#: The release's mean of SIFT Flow's images, BGR.
MEAN_BGR: Tuple[float, float, float] = (114.578, 115.294, 108.353)
#: The variable of both label .mat files, and the folder every file of the dataset sits in.
LABEL_VARIABLE = "S"
SCENES = "spatial_envelope_256x256_static_8outdoorcategories"


class SIFTFlowSegmentation(SegmentationDataset):
    """A split of SIFT Flow (module docstring); ``labels`` ("semantic", "geometric") pick the label
    sets, both by default (what the two-headed siftflow-fcn* networks learn)."""

    name = "siftflow"
    label_classes = {"semantic": SIFTFLOW_SEMANTIC_CLASSES, "geometric": SIFTFLOW_GEOMETRIC_CLASSES}
    default_splits = ("trainval", "test")

    def split_path(self) -> Path:
        return self.root / f"{self.split}.txt"

    def files(self, image_id: str) -> Dict[str, Path]:
        return {"color": self.root / "Images" / SCENES / f"{image_id}.jpg",
                "semantic": self.root / "SemanticLabels" / SCENES / f"{image_id}.mat",
                "geometric": self.root / "GeoLabels" / SCENES / f"{image_id}.mat"}

    def load_input(self, modality: str, path: Path) -> torch.Tensor:
        return preprocess(read_image(path), MEAN_BGR)

    def load_label(self, label: str, path: Path) -> np.ndarray:
        raw = read_mat_array(path, LABEL_VARIABLE)
        if label == "geometric":
            raw = np.where(raw == -1, 0, raw)  # the geometric labels also mark void as -1
        return shift_void(raw, f"label {path}")
