"""VOC-format data, as ``fcnfast.data`` offered it before the datasets became a package.

Everything here lives in :mod:`fcnfast.datasets` (one module per dataset); this module keeps the
older imports working.
"""

from .datasets import (
    IGNORE_INDEX, MEAN_BGR, VOC_CLASSES, RandomFlipScale, VOCSegmentation, class_names_for, make_toy_dataset,
    pad_collate, preprocess, read_image, read_label, to_image, voc_colormap,
)

__all__ = [
    "IGNORE_INDEX", "MEAN_BGR", "VOC_CLASSES", "VOCSegmentation", "RandomFlipScale", "class_names_for",
    "make_toy_dataset", "pad_collate", "preprocess", "read_image", "read_label", "to_image", "voc_colormap",
]
