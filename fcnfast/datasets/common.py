"""What every dataset shares: the ignore label and the Caffe preprocessing of an input.

Preprocessing (docs/design.md §6, the Caffe FCN models' input): an H×W×C array of pixel values
becomes a float32 C×H×W tensor minus a per-channel mean; colour images are also turned from RGB
into BGR, the channel order the Caffe models were trained on. Each dataset declares its means.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

__all__ = ["IGNORE_INDEX", "MEAN_BGR", "preprocess", "subtract_mean", "to_image"]

#: Label value that losses and metrics ignore (VOC object boundaries, NYUDv2 and SIFT Flow void).
IGNORE_INDEX = 255
#: Per-channel mean of the Caffe FCN/VGG models on PASCAL VOC, in **BGR** order.
MEAN_BGR: Tuple[float, float, float] = (104.00698793, 116.66876762, 122.67891434)


def subtract_mean(array: np.ndarray, mean: Sequence[float]) -> torch.Tensor:
    """An H×W×C (or H×W) array minus ``mean`` per channel, as a float32 C×H×W tensor."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != len(mean):
        raise ValueError(f"expected an (H, W, {len(mean)}) array for {len(mean)} channel means, got shape {arr.shape}")
    if arr.dtype.kind not in "uif":
        raise TypeError(f"expected a numeric image, got dtype {arr.dtype}")
    out = arr.astype(np.float32) - np.asarray(mean, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def preprocess(rgb: Union[np.ndarray, Image.Image], mean: Sequence[float] = MEAN_BGR) -> torch.Tensor:
    """One RGB image (H×W×3, values 0..255, usually uint8) -> float32 CHW BGR tensor minus ``mean``
    (BGR order; VOC's by default).

    Accepts a numpy array or a PIL image (converted to RGB). Raises ValueError for any other shape.
    """
    if isinstance(rgb, Image.Image):
        rgb = np.asarray(rgb.convert("RGB"))
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"preprocess: expected an RGB image of shape (H, W, 3), got shape {arr.shape}")
    if arr.dtype.kind not in "uif":
        raise TypeError(f"preprocess: expected a numeric image, got dtype {arr.dtype}")
    return subtract_mean(arr[:, :, ::-1], mean)


def to_image(tensor: Union[torch.Tensor, np.ndarray], mean: Sequence[float] = MEAN_BGR) -> np.ndarray:
    """Undo :func:`preprocess`: (3, H, W) or (1, 3, H, W) BGR-minus-mean -> uint8 RGB H×W×3 numpy.

    Values are rounded and clipped to 0..255 (augmentation can push them slightly out of range).
    """
    if isinstance(tensor, torch.Tensor):
        arr = tensor.detach().to("cpu", torch.float32).numpy()
    else:
        arr = np.asarray(tensor, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"to_image: expected a (3, H, W) or (1, 3, H, W) image tensor, got shape {arr.shape}")
    bgr = arr.transpose(1, 2, 0) + np.asarray(mean, dtype=np.float32)
    return np.ascontiguousarray(np.clip(np.rint(bgr[:, :, ::-1]), 0, 255).astype(np.uint8))
