"""The datasets of the FCN reference release, each read in the layout the release reads it in.

    ds = open_dataset("nyud", "data/nyud", "test", modalities=("color", "hha"))
    image, label = ds[0]            # (6, H, W) colour + HHA, (H, W) classes 0..39 or 255

One module per dataset (:mod:`.voc`, :mod:`.pascalcontext`, :mod:`.nyud`, :mod:`.siftflow`), on
the shared :class:`~.base.SegmentationDataset`; :mod:`.decode` opens every file, :mod:`.matfile`
reads the .mat labels, :mod:`.transforms` augments and batches, :mod:`.toy` and
:mod:`.toy_release` write small synthetic datasets in each layout. This package depends on
torch, numpy and Pillow only (no fcnfast ops or models).
"""

from typing import Callable, Dict, Type

from .base import SegmentationDataset
from .common import IGNORE_INDEX, MEAN_BGR, preprocess, subtract_mean, to_image
from .decode import read_depth, read_image, read_label
from .matfile import MatFileError, read_mat_array, write_mat
from .nyud import NYUD_CLASSES, NYUDSegmentation
from .pascalcontext import PASCAL_CONTEXT_CLASSES, PascalContextSegmentation
from .siftflow import SIFTFLOW_GEOMETRIC_CLASSES, SIFTFLOW_SEMANTIC_CLASSES, SIFTFlowSegmentation
from .toy import make_toy_dataset
from .toy_release import make_toy_nyud, make_toy_pascalcontext, make_toy_siftflow
from .transforms import RandomFlipScale, pad_collate
from .voc import VOC_CLASSES, VOCSegmentation, class_names_for, voc_colormap

#: Every dataset reader by name, in the order the CLI lists them.
DATASETS: Dict[str, Type[SegmentationDataset]] = {
    cls.name: cls for cls in (VOCSegmentation, PascalContextSegmentation, NYUDSegmentation, SIFTFlowSegmentation)
}
DATASET_NAMES = tuple(DATASETS)
#: A toy generator per dataset: ``f(root, num_train, num_val, size, seed=...) -> info``.
TOY_DATASETS: Dict[str, Callable[..., Dict[str, object]]] = {
    "voc": make_toy_dataset, "pascalcontext": make_toy_pascalcontext, "nyud": make_toy_nyud,
    "siftflow": make_toy_siftflow,
}


def dataset_class(name: str) -> Type[SegmentationDataset]:
    """The reader of dataset ``name``; ValueError listing the names for an unknown one."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASET_NAMES)}")
    return DATASETS[name]


def open_dataset(name: str, root, split=None, **options) -> SegmentationDataset:
    """Split ``split`` (default: the dataset's training split) of dataset ``name`` at ``root``;
    ``options`` (modalities, labels, num_classes, transform) go to its reader."""
    return dataset_class(name)(root, split, **options)


__all__ = [
    "DATASETS", "DATASET_NAMES", "TOY_DATASETS", "dataset_class", "open_dataset", "SegmentationDataset",
    "IGNORE_INDEX", "MEAN_BGR", "preprocess", "subtract_mean", "to_image", "read_image", "read_depth", "read_label",
    "MatFileError", "read_mat_array", "write_mat",
    "VOC_CLASSES", "VOCSegmentation", "class_names_for", "voc_colormap",
    "PASCAL_CONTEXT_CLASSES", "PascalContextSegmentation", "NYUD_CLASSES", "NYUDSegmentation",
    "SIFTFLOW_SEMANTIC_CLASSES", "SIFTFLOW_GEOMETRIC_CLASSES", "SIFTFlowSegmentation",
    "RandomFlipScale", "pad_collate", "make_toy_dataset", "make_toy_nyud", "make_toy_siftflow", "make_toy_pascalcontext",
]
