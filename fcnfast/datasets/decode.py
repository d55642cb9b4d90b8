"""Decoding the files of a dataset: images, depth maps and label PNGs.

Colour and HHA images are read by :func:`fcnfast.images.read_image` (EXIF orientation, every
Pillow mode, 16-bit grey); depth maps and label PNGs, whose values are data, go through
:func:`decode`, which keeps their mode and pixel values as stored. Each error names the
file: FileNotFoundError when it is missing, ValueError when it cannot be decoded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..images import read_image as _read_rgb
from .common import IGNORE_INDEX

__all__ = ["decode", "read_image", "read_depth", "read_label", "check_label_values", "shift_void"]

PathLike = Union[str, "os.PathLike[str]"]


def decode(path: PathLike, what: str = "image") -> Image.Image:
    """The decoded image file at ``path`` (its pixels loaded). ``what`` names it in errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read {what} {path}: {e}") from e


def read_image(path: PathLike) -> np.ndarray:
    """An image file as uint8 RGB H×W×3 (colour photos and the 3-channel HHA encoding alike),
    read by :func:`fcnfast.images.read_image`: EXIF orientation applied, every Pillow mode,
    16-bit grey scaled to 8 bits."""
    return _read_rgb(path)


def read_depth(path: PathLike) -> np.ndarray:
    """A one-channel depth map (8- or 16-bit PNG) as float32 H×W, values as stored."""
    im = decode(path, "depth map")
    if im.mode not in ("I;16", "I;16B", "I;16L", "I", "L", "F"):
        raise ValueError(f"depth map {path} has mode {im.mode!r}; expected a one-channel (grey) image")
    return np.asarray(im, dtype=np.float32)


def read_label(path: PathLike, num_classes: Optional[int] = 21) -> np.ndarray:
    """A label PNG as uint8 H×W (palette index / grey value = class; 255 = ignore).

    Raises FileNotFoundError if missing; ValueError naming the file if it cannot be decoded,
    is not a palette ('P') or grayscale ('L') image (e.g. an RGB colour rendering of the labels),
    or holds a value outside {0..num_classes-1, 255} (``num_classes=None``: values unchecked).
    """
    im = decode(path, "label image")
    if im.mode not in ("P", "L"):
        raise ValueError(
            f"label image {path} has mode {im.mode!r}; expected a palette ('P') or grayscale ('L') PNG "
            f"whose pixel values are class indices (an RGB colour rendering cannot be used)"
        )
    label = np.array(im)
    return label if num_classes is None else check_label_values(label, num_classes, f"label image {path}")


def check_label_values(label: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    """``label`` when every value is a class (0..num_classes-1) or IGNORE_INDEX; else ValueError naming ``what``."""
    counts = np.bincount(label.reshape(-1).astype(np.int64), minlength=256)
    present = np.flatnonzero(counts)
    bad = present[(present >= num_classes) & (present != IGNORE_INDEX)]
    if bad.size:
        raise ValueError(
            f"{what} holds values {bad.tolist()[:10]} outside {{0..{num_classes - 1}, {IGNORE_INDEX}}} for "
            f"num_classes={num_classes} (wrong palette, or num_classes too small)"
        )
    return label


def shift_void(raw: np.ndarray, what: str) -> np.ndarray:
    """Labels numbered from 1 with 0 as void (the release's .mat files) as uint8 numbered from 0
    with void at IGNORE_INDEX, as the release's data layers shift them. ValueError naming ``what``
    for values that are not integers in 0..255."""
    raw = np.asarray(raw)
    if raw.size and (raw.min() < 0 or raw.max() > 255 or (raw.dtype.kind == "f" and not np.all(raw == np.round(raw)))):
        raise ValueError(f"{what} holds values outside the integers 0..255 (found {raw.min()}..{raw.max()})")
    return raw.astype(np.uint8) - np.uint8(1)  # 0 (void) wraps to 255 == IGNORE_INDEX
