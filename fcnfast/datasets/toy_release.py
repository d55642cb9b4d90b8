"""Small synthetic NYUDv2, SIFT Flow and PASCAL-Context datasets in the release's layouts.

Each writes scenes of :func:`fcnfast.datasets.toy.draw_scene` with the dataset's real class counts,
files and label conventions (1-based .mat labels with 0 as void, SIFT Flow's -1 geometric void,
PASCAL-Context's full label list mapped by name), so the readers, training and evaluation run on
them end to end. Every function returns ``{"root", "splits": {name: ids}, "num_classes", "sizes"}``
and is deterministic for ``seed``; existing files of the same names are overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .base import PathLike
from .matfile import write_mat
from .nyud import LABEL_VARIABLE as NYUD_VARIABLE
from .nyud import NYUD_CLASSES
from .pascalcontext import LABEL_VARIABLE as CONTEXT_VARIABLE
from .pascalcontext import LABELS_FILE, PASCAL_CONTEXT_CLASSES, TASK_LABELS_FILE, TASK_RENAMES
from .siftflow import LABEL_VARIABLE as SIFTFLOW_VARIABLE
from .siftflow import SCENES, SIFTFLOW_GEOMETRIC_CLASSES, SIFTFLOW_SEMANTIC_CLASSES
from .toy import check_counts, class_colours, draw_scene, edge_ring, size_range

__all__ = ["make_toy_nyud", "make_toy_siftflow", "make_toy_pascalcontext"]

Size = Optional[Union[int, Sequence[int]]]


def _scenes(num_train: int, num_val: int, size: Size, num_classes: int, seed: int):
    """(index, image, classes 0..num_classes-1 with 0 the background, void ring) of each scene."""
    check_counts(num_train, num_val)
    lo, hi = size_range(size, None, None)
    rng = np.random.default_rng(seed)
    colours = class_colours(num_classes)
    for k in range(num_train + num_val):
        img, label = draw_scene(rng, lo, hi, colours)
        yield k, img, label, edge_ring(label), rng


def _write_splits(folder: Path, splits: Dict[str, List[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, ids in splits.items():
        (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


def make_toy_nyud(root: PathLike, num_train: int = 4, num_val: int = 2, size: Size = (48, 64), *,
                  seed: int = 0) -> Dict[str, object]:
    """A toy NYUDv2 (:mod:`fcnfast.datasets.nyud`): colour, HHA and a 16-bit depth map that all
    follow the classes, ``segmentation`` .mat labels (background "wall", shapes of the other 39
    classes, void on their edges). Splits: trainval (= train) and test (= val)."""
    root = Path(root)
    for sub in ("data/images", "data/hha", "data/depth", "segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids, sizes = [], {}
    for k, img, label, ring, rng in _scenes(num_train, num_val, size, len(NYUD_CLASSES), seed):
        image_id = f"{k + 1:04d}"
        ids.append(image_id)
        sizes[image_id] = label.shape
        classes = label.astype(np.uint8) + 1  # 1-based: background is class 1 (wall)
        classes[ring] = 0  # void
        depth = 1000.0 + 60.0 * label + rng.normal(0, 5, size=label.shape)  # millimetres, never 0
        hha = np.stack([255 - img[..., 0], label.astype(np.uint8) * 6, img[..., 2]], axis=-1)
        Image.fromarray(img).save(root / "data" / "images" / f"img_{image_id}.png")
        Image.fromarray(hha).save(root / "data" / "hha" / f"img_{image_id}.png")
        Image.fromarray(np.clip(depth, 1, 65535).astype(np.uint16)).save(root / "data" / "depth" / f"img_{image_id}.png")
        write_mat(root / "segmentation" / f"img_{image_id}.mat", {NYUD_VARIABLE: classes})
    splits = {"trainval": ids[:num_train], "train": ids[:num_train], "test": ids[num_train:], "val": ids[num_train:]}
    _write_splits(root, splits)
    return {"root": root, "splits": splits, "num_classes": len(NYUD_CLASSES), "sizes": sizes}


# SIFT Flow's semantic classes (1-based) that are sky or horizontal in the toy's geometric labels.
_SKY = {SIFTFLOW_SEMANTIC_CLASSES.index(n) + 1 for n in ("sky", "sun", "moon")}
_HORIZONTAL = {SIFTFLOW_SEMANTIC_CLASSES.index(n) + 1 for n in (
    "crosswalk", "desert", "field", "grass", "river", "road", "sand", "sea", "sidewalk")}


def make_toy_siftflow(root: PathLike, num_train: int = 4, num_val: int = 2, size: Size = (48, 48), *,
                      seed: int = 0) -> Dict[str, object]:
    """A toy SIFT Flow (:mod:`fcnfast.datasets.siftflow`): a sky background with shapes of the 33
    semantic classes, geometric labels that follow them, both ``S`` .mat files of doubles with void
    on the edges (0 semantic; -1 geometric, as in the dataset). Splits: trainval and test."""
    root = Path(root)
    for sub in ("Images", "SemanticLabels", "GeoLabels"):
        (root / sub / SCENES).mkdir(parents=True, exist_ok=True)
    ids, sizes = [], {}
    sky = SIFTFLOW_SEMANTIC_CLASSES.index("sky") + 1
    for k, img, label, ring, _ in _scenes(num_train, num_val, size, len(SIFTFLOW_SEMANTIC_CLASSES) + 1, seed):
        image_id = f"toy_scene{k + 1:03d}"
        ids.append(image_id)
        sizes[image_id] = label.shape
        semantic = np.where(label == 0, sky, label).astype(np.float64)
        geometric = np.where(np.isin(semantic, list(_SKY)), 1.0, np.where(np.isin(semantic, list(_HORIZONTAL)), 2.0, 3.0))
        semantic[ring], geometric[ring] = 0.0, -1.0
        Image.fromarray(img).save(root / "Images" / SCENES / f"{image_id}.jpg", quality=95)
        write_mat(root / "SemanticLabels" / SCENES / f"{image_id}.mat", {SIFTFLOW_VARIABLE: semantic})
        write_mat(root / "GeoLabels" / SCENES / f"{image_id}.mat", {SIFTFLOW_VARIABLE: geometric})
    splits = {"trainval": ids[:num_train], "test": ids[num_train:]}
    _write_splits(root, splits)
    classes = (len(SIFTFLOW_SEMANTIC_CLASSES), len(SIFTFLOW_GEOMETRIC_CLASSES))
    return {"root": root, "splits": splits, "num_classes": classes, "sizes": sizes}


# Full labels of the toy PASCAL-Context besides the task's: they all become background.
_OTHER_LABELS = ("accordion", "air conditioner", "antenna", "artillery", "ashtray", "atrium", "baby carriage")


def toy_full_labels(seed: int = 0) -> Tuple[str, ...]:
    """The toy's full label list: the 59 task classes under their full names and a few others,
    shuffled, so the mapping by name is not the identity."""
    names = [TASK_RENAMES.get(n, n) for n in PASCAL_CONTEXT_CLASSES[1:]] + list(_OTHER_LABELS)
    order = np.random.default_rng(seed).permutation(len(names))
    return tuple(names[i] for i in order)


def make_toy_pascalcontext(root: PathLike, num_train: int = 4, num_val: int = 2, size: Size = (48, 64), *,
                           seed: int = 0) -> Dict[str, object]:
    """A toy PASCAL-Context (:mod:`fcnfast.datasets.pascalcontext`): shapes of the 59 classes,
    ``LabelMap`` .mat files of full labels (background pixels hold labels outside the task, or 0),
    labels.txt (:func:`toy_full_labels`) and 59_labels.txt. Splits: train and val."""
    root = Path(root)
    voc = root / "VOC2010"
    for sub in (voc / "JPEGImages", root / "trainval"):
        sub.mkdir(parents=True, exist_ok=True)
    full = toy_full_labels(seed)
    (root / LABELS_FILE).write_text("".join(f"{i}: {name}\n" for i, name in enumerate(full, start=1)))
    (root / TASK_LABELS_FILE).write_text("".join(f"{k}: {n}\n" for k, n in enumerate(PASCAL_CONTEXT_CLASSES[1:], 1)))
    to_full = np.array([0] + [full.index(TASK_RENAMES.get(n, n)) + 1 for n in PASCAL_CONTEXT_CLASSES[1:]], np.uint16)
    others = np.array([full.index(n) + 1 for n in _OTHER_LABELS] + [0], dtype=np.uint16)
    ids, sizes = [], {}
    for k, img, label, _, rng in _scenes(num_train, num_val, size, len(PASCAL_CONTEXT_CLASSES), seed):
        image_id = f"2010_{k + 1:06d}"
        ids.append(image_id)
        sizes[image_id] = label.shape
        label_map = to_full[label]
        background = label == 0
        label_map[background] = others[rng.integers(0, len(others))]
        Image.fromarray(img).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        write_mat(root / "trainval" / f"{image_id}.mat", {CONTEXT_VARIABLE: label_map})
    splits = {"train": ids[:num_train], "val": ids[num_train:]}
    _write_splits(voc / "ImageSets" / "Main", splits)
    return {"root": root, "splits": splits, "num_classes": len(PASCAL_CONTEXT_CLASSES), "sizes": sizes}
