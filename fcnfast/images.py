"""Image files and label maps as pictures: reading images, the VOC palette, the label PNG writer,
overlays, and shrinking inputs.

:func:`read_image` is the one reader of input images (``fcnfast segment``, the datasets): it
applies the EXIF orientation, as image viewers do, and turns every Pillow mode into 8-bit RGB.
:func:`save_label_png` is the one writer of label PNGs (``fcnfast segment`` and the predictions
of ``fcnfast evaluate`` / validation). Sizes are written height x width ("375x500") everywhere.

This module depends on numpy, Pillow, torch and :mod:`fcnfast.errors` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .errors import reporting_full_disk

__all__ = ["IMAGE_SUFFIXES", "overlay_labels", "read_image", "save_image", "save_label_png", "shrink_to",
           "voc_colormap"]

# A PNG palette holds this many colours; larger label values need a 16-bit grey PNG.
_PALETTE_SIZE = 256
# 16-bit greyscale modes (PNG, TIFF); "I" is 32-bit signed, which Pillow also uses for 16-bit files.
_MODES_16BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_UINT16_MAX = 65535
#: File name endings of the images ``fcnfast segment FOLDER`` reads (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC palette: uint8 array (n, 3); index 255 is the boundary colour (224, 224, 192).

    Same values as ``imgviz.label_colormap()`` and the VOC devkit's ``labelcolormap``.
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _as_rgb8(im, path: Path) -> np.ndarray:
    """``im`` (any Pillow mode) as uint8 RGB H x W x 3. 16-bit grey is scaled to 8 bits (Pillow's
    own conversion would clip it at 255); alpha is dropped; floating-point pixels are refused."""
    mode = im.mode
    if mode in _MODES_16BIT or mode == "I":
        values = np.asarray(im).astype(np.int64)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > _UINT16_MAX:
            raise ValueError(f"cannot read image {path}: {mode} pixels span {low}..{high}, "
                             f"outside the 16-bit range 0..{_UINT16_MAX}")
        # Round to nearest: 0 -> 0, 65535 -> 255.
        return _grey_to_rgb(((values * 255 + _UINT16_MAX // 2) // _UINT16_MAX).astype(np.uint8))
    if mode == "F":
        raise ValueError(f"cannot read image {path}: it has floating-point pixels (mode F); "
                         f"save it as an 8- or 16-bit image")
    if mode in ("P", "PA") and (mode == "PA" or "transparency" in im.info):
        im = im.convert("RGBA")  # Pillow warns when a palette with transparency goes to RGB directly
    return np.asarray(im.convert("RGB"))


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read an image file as uint8 RGB H x W x 3, turned as its EXIF orientation says.

    Every Pillow mode is read: greyscale, palette, CMYK, YCbCr and the rest are converted to RGB;
    16-bit greyscale is scaled to 8 bits; an alpha channel is dropped. Raises FileNotFoundError
    for a missing file (and for a folder, saying so) and ValueError naming the file when it
    cannot be decoded (corrupt, truncated, not an image) or has floating-point pixels.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()  # the pixels stay in memory after the file closes
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block: the pixels are still good, unturned
        pass
    return _as_rgb8(im, path)


def save_label_png(path: Union[str, os.PathLike], label: Union[torch.Tensor, np.ndarray]) -> None:
    """Write an (H, W) map of class indices as a PNG whose pixel values are the indices.

    Values 0..255 give a palette PNG (PIL mode "P") coloured with ``voc_colormap()``; larger
    values (more classes than a palette holds) give a 16-bit greyscale PNG. Raises ValueError
    for another shape, negative values, or values above 65535.
    """
    from PIL import Image

    arr = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if arr.ndim != 2:
        raise ValueError(f"save_label_png: expected an (H, W) label map, got shape {arr.shape}")
    low, high = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if low < 0 or high > np.iinfo(np.uint16).max:
        raise ValueError(f"save_label_png: labels must lie in 0..65535, got {low}..{high}")
    if high >= _PALETTE_SIZE:
        image = Image.fromarray(np.ascontiguousarray(arr.astype(np.uint16)))
    else:
        arr = np.ascontiguousarray(arr.astype(np.uint8))
        image = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
        image.putpalette(voc_colormap(_PALETTE_SIZE).reshape(-1).tolist())
    save_image(image, path)


def save_image(image, path: Union[str, os.PathLike]) -> None:
    """``image.save(path)`` (a PIL image); a full disk raises NoSpaceLeftError naming the folder."""
    with reporting_full_disk(path):
        image.save(path)


def shrink_to(rgb: np.ndarray, max_side: Optional[int]) -> np.ndarray:
    """``rgb`` (H, W, 3 uint8) resized bilinearly so its longer side is at most ``max_side``
    (unchanged when it already fits or ``max_side`` is None/0)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


def overlay_labels(rgb: np.ndarray, label: np.ndarray, class_names: Sequence[str]) -> Tuple[np.ndarray, bool]:
    """(``rgb`` with ``label``'s VOC colours blended in, whether a legend of class names was drawn).

    Uses imgviz's ``label2rgb`` with a legend; without imgviz, or when it cannot draw the legend
    (a font problem), a legend-less blend, so the overlay is never lost.
    """
    try:
        import imgviz
    except ImportError:
        colours = voc_colormap(_PALETTE_SIZE)[label % _PALETTE_SIZE].astype(np.float32)
        return np.clip(0.5 * rgb.astype(np.float32) + 0.5 * colours, 0, 255).astype(np.uint8), False
    font_size = max(10, min(rgb.shape[:2]) // 20)
    names = {i: name for i, name in enumerate(class_names)}
    try:
        return imgviz.label2rgb(label.astype(np.int32), image=rgb, label_names=names, font_size=font_size,
                                loc="rb"), True
    except Exception:
        return imgviz.label2rgb(label.astype(np.int32), image=rgb), False
