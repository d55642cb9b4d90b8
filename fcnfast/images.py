"""Label maps as pictures: the VOC palette PNG writer, overlays, and shrinking inputs for display.

:func:`save_label_png` is the one writer of label PNGs (``fcnfast segment`` and the predictions
of ``fcnfast evaluate`` / validation).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .data import voc_colormap

__all__ = ["overlay_labels", "save_label_png", "shrink_to"]

# A PNG palette holds this many colours; larger label values need a 16-bit grey PNG.
_PALETTE_SIZE = 256


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
        Image.fromarray(np.ascontiguousarray(arr.astype(np.uint16))).save(path)
        return
    arr = np.ascontiguousarray(arr.astype(np.uint8))
    image = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    image.putpalette(voc_colormap(_PALETTE_SIZE).reshape(-1).tolist())
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
