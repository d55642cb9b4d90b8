"""PASCAL-Context (the pascalcontext-fcn* networks): PASCAL VOC 2010 labelled whole-scene, 59 classes
plus background.

    VOC2010/JPEGImages/{id}.jpg
    VOC2010/ImageSets/Main/{split}.txt   ids (the release trains on train, validates on val)
    trainval/{id}.mat                    variable ``LabelMap``: the full labelling, 1..459 (0 none)
    labels.txt                           "n: name" for every full label (n = line number)
    59_labels.txt                        "n: name" for the 59 classes of the task, in output order

As the release's data layer does, each pixel's full label maps to the 59-class task by name
(spaces dropped): class k (1..59) is the k-th name of 59_labels.txt, found in labels.txt, where
three classes go by other names (diningtable is "table", bedcloth "bedclothes", clothes "cloth").
Every other pixel is background (0): this dataset has no ignored label. Images are BGR minus the
VOC mean as the release rounds it (:data:`MEAN_BGR`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from .base import SegmentationDataset
from .common import preprocess
from .decode import read_image
from .matfile import read_mat_array

__all__ = ["PASCAL_CONTEXT_CLASSES", "PascalContextSegmentation", "MEAN_BGR", "LABEL_VARIABLE", "TASK_RENAMES",
           "read_label_names"]

#: Background and the 59 classes, in the networks' output order (the release's classes-59.txt).
PASCAL_CONTEXT_CLASSES: Tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor", "bag",
    "bed", "bench", "book", "building", "cabinet", "ceiling", "clothes", "computer", "cup", "door", "fence", "floor",
    "flower", "food", "grass", "ground", "keyboard", "light", "mountain", "mouse", "curtain", "platform", "sign",
    "plate", "road", "rock", "shelves", "sidewalk", "sky", "snow", "bedcloth", "track", "tree", "truck", "wall",
    "water", "window", "wood",
)  # fmt: skip
#: The VOC mean as the release's PASCAL-Context data layer rounds it, BGR.
MEAN_BGR: Tuple[float, float, float] = (104.007, 116.669, 122.679)
LABEL_VARIABLE = "LabelMap"
#: Task class name -> its name among the full labels.
TASK_RENAMES: Dict[str, str] = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}
LABELS_FILE, TASK_LABELS_FILE = "labels.txt", "59_labels.txt"


def read_label_names(path: Path) -> List[str]:
    """The names of a "n: name" label list, spaces dropped, in file order (FileNotFoundError /
    ValueError naming the file)."""
    if not path.is_file():
        raise FileNotFoundError(f"PASCAL-Context label list not found: {path}")
    names = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if ":" not in line:
            raise ValueError(f"{path} line {number} is not 'n: name': {line!r}")
        names.append(line.split(":", 1)[1].replace(" ", ""))
    return names


class PascalContextSegmentation(SegmentationDataset):
    """A split of PASCAL-Context (module docstring). ``class_names`` are background and the task's
    names as its 59_labels.txt lists them."""

    name = "pascalcontext"
    label_classes = {"semantic": PASCAL_CONTEXT_CLASSES}

    def __init__(self, root, split=None, **options) -> None:
        super().__init__(root, split, **options)
        full = read_label_names(self.root / LABELS_FILE)
        task = read_label_names(self.root / TASK_LABELS_FILE)
        self.task_names = ("background", *task)
        lookup = {name: i + 1 for i, name in reversed(list(enumerate(full)))}  # first occurrence, as list.index
        absent = [name for name in task if TASK_RENAMES.get(name, name) not in lookup]
        if absent:
            raise ValueError(f"{self.root / LABELS_FILE} lacks the task classes {absent} of "
                             f"{self.root / TASK_LABELS_FILE}")
        # full label -> task class; every full label not in the task is background.
        self._lut = np.zeros(max(lookup.values()) + 1, dtype=np.uint8)
        for k, name in enumerate(task, start=1):
            self._lut[lookup[TASK_RENAMES.get(name, name)]] = k

    def names_of(self, label: str) -> Tuple[str, ...]:
        n = self.class_counts[0]
        return self.task_names[:n] + tuple(f"class{i}" for i in range(len(self.task_names), n))

    def split_path(self) -> Path:
        return self.root / "VOC2010" / "ImageSets" / "Main" / f"{self.split}.txt"

    def files(self, image_id: str) -> Dict[str, Path]:
        return {"color": self.root / "VOC2010" / "JPEGImages" / f"{image_id}.jpg",
                "semantic": self.root / "trainval" / f"{image_id}.mat"}

    def load_input(self, modality: str, path: Path) -> torch.Tensor:
        return preprocess(read_image(path), MEAN_BGR)

    def load_label(self, label: str, path: Path) -> np.ndarray:
        full = read_mat_array(path, LABEL_VARIABLE).astype(np.int64)
        if full.size and (full.min() < 0):
            raise ValueError(f"label {path} holds negative labels")
        inside = full < len(self._lut)
        return np.where(inside, self._lut[np.where(inside, full, 0)], 0).astype(np.uint8)
