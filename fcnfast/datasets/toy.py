"""Small synthetic datasets for tests and demos: scenes of coloured shapes whose colour gives the class.

:func:`draw_scene` paints one scene (a noisy, low-saturation background with 1-3 rectangles or
ellipses, each in its class's colour plus mild noise), so colour -> class is learnable by even a
per-pixel classifier; :func:`make_toy_dataset` writes such scenes as a VOC-format dataset, and
:mod:`fcnfast.datasets.toy_release` as the other datasets' layouts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .base import PathLike
from .common import IGNORE_INDEX
from .voc import voc_colormap

__all__ = ["class_colours", "draw_scene", "edge_ring", "size_range", "check_counts", "make_toy_dataset"]


def class_colours(num_classes: int) -> np.ndarray:
    """Saturated, well separated RGB colours for classes 1..n-1 (row 0 unused: background)."""
    k = max(num_classes - 1, 1)
    cols = np.zeros((num_classes, 3), dtype=np.float64)
    for c in range(1, num_classes):
        hue = (c - 1) / k
        val = 0.95 if c % 2 else 0.7  # alternate brightness so neighbouring hues differ more
        # HSV -> RGB with saturation 0.9
        sat = 0.9
        i = int(hue * 6) % 6
        f = hue * 6 - int(hue * 6)
        p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
        cols[c] = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return (cols * 255).round()


def _as_hw(v: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        v = (int(v), int(v))
    v = tuple(int(x) for x in v)
    if len(v) != 2 or min(v) < 8:
        raise ValueError(f"make_toy_dataset: {name} must be an int or (H, W) with both >= 8, got {v}")
    return v  # type: ignore[return-value]


def size_range(size, min_size, max_size) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """((min H, min W), (max H, max W)) of the toy generators' ``size`` / ``min_size`` / ``max_size``."""
    if (min_size is None) != (max_size is None):
        raise ValueError("make_toy_dataset: give both min_size and max_size, or neither")
    if min_size is not None and size is not None:
        raise ValueError("make_toy_dataset: give either size or min_size/max_size, not both")
    if min_size is not None:
        lo, hi = _as_hw(min_size, "min_size"), _as_hw(max_size, "max_size")
        if lo[0] > hi[0] or lo[1] > hi[1]:
            raise ValueError(f"make_toy_dataset: min_size {lo} exceeds max_size {hi}")
        return lo, hi
    lo = _as_hw(size if size is not None else (64, 96), "size")
    return lo, lo


def draw_scene(rng: np.random.Generator, lo: Tuple[int, int], hi: Tuple[int, int],
               colours: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One scene of a size drawn in [lo, hi]: (uint8 RGB H×W×3, uint8 H×W classes, 0 = background).
    ``colours`` (from :func:`class_colours`) fixes the classes: 1..len(colours)-1."""
    H = int(rng.integers(lo[0], hi[0] + 1))
    W = int(rng.integers(lo[1], hi[1] + 1))
    # Background: smooth low-saturation gradient + per-pixel noise.
    base = rng.uniform(90, 160)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    grad = rng.uniform(-25, 25) * (yy / H - 0.5) + rng.uniform(-25, 25) * (xx / W - 0.5)
    img = base + grad[..., None] + rng.uniform(-6, 6, size=3) + rng.normal(0, 8, size=(H, W, 3))
    label = np.zeros((H, W), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        c = int(rng.integers(1, len(colours)))
        sh = max(3, int(H * rng.uniform(0.25, 0.6)))
        sw = max(3, int(W * rng.uniform(0.25, 0.6)))
        y0 = int(rng.integers(0, H - sh + 1))
        x0 = int(rng.integers(0, W - sw + 1))
        if rng.random() < 0.5:
            mask = np.zeros((H, W), dtype=bool)
            mask[y0 : y0 + sh, x0 : x0 + sw] = True
        else:
            cy, cx, ry, rx = y0 + (sh - 1) / 2, x0 + (sw - 1) / 2, sh / 2, sw / 2
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        label[mask] = c
        img[mask] = colours[c] + rng.normal(0, 6, size=(int(mask.sum()), 3))
    return np.clip(img, 0, 255).round().astype(np.uint8), label


def edge_ring(label: np.ndarray) -> np.ndarray:
    """Pixels with a differently labelled 4-neighbour (both sides of every edge): VOC's 255 ring."""
    edge = np.zeros(label.shape, dtype=bool)
    dy = label[1:, :] != label[:-1, :]
    dx = label[:, 1:] != label[:, :-1]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return edge


def check_counts(num_train: int, num_val: int) -> None:
    if num_train < 0 or num_val < 0:
        raise ValueError(f"make_toy_dataset: num_train/num_val must be >= 0, got {num_train}/{num_val}")


def make_toy_dataset(
    root: PathLike,
    num_train: int = 8,
    num_val: int = 4,
    size: Optional[Union[int, Sequence[int]]] = None,
    *,
    min_size: Optional[Union[int, Sequence[int]]] = None,
    max_size: Optional[Union[int, Sequence[int]]] = None,
    num_classes: int = 21,
    seed: int = 0,
) -> Dict[str, object]:
    """Write a small synthetic VOC-format dataset under ``root`` (deterministic for ``seed``).

    Each image has 1-3 rectangles/ellipses on a noisy, low-saturation background. Each shape's
    class (1..num_classes-1) fixes its colour (plus mild noise), so colour -> class is learnable by
    even a per-pixel classifier. Labels are VOC-palette PNGs with a 255 ring along every class
    boundary, like real VOC. Writes ``JPEGImages/``, ``SegmentationClass/`` and
    ``ImageSets/Segmentation/{train,val,trainval}.txt``; existing files with the same names are
    overwritten.

    Sizes: ``size`` (H, W) for every image (default (64, 96)), or ``min_size``/``max_size``
    (int or (H, W), both given) for sizes drawn uniformly per image.

    Returns ``{"root": Path, "splits": {"train": [...ids], "val": [...], "trainval": [...]},
    "num_classes": n, "sizes": {id: (H, W)}}``.
    """
    if not 2 <= int(num_classes) <= 255:
        raise ValueError(f"make_toy_dataset: num_classes must be in 2..255, got {num_classes}")
    check_counts(num_train, num_val)
    lo, hi = size_range(size, min_size, max_size)
    num_classes = int(num_classes)
    root = Path(root)
    img_dir = root / "JPEGImages"
    lbl_dir = root / "SegmentationClass"
    set_dir = root / "ImageSets" / "Segmentation"
    for d in (img_dir, lbl_dir, set_dir):
        d.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    colours = class_colours(num_classes)
    palette = voc_colormap(256).reshape(-1).tolist()
    ids = [f"toy_{k:06d}" for k in range(num_train + num_val)]
    sizes: Dict[str, Tuple[int, int]] = {}

    for img_id in ids:
        img, label = draw_scene(rng, lo, hi, colours)
        sizes[img_id] = label.shape
        label[edge_ring(label)] = IGNORE_INDEX
        Image.fromarray(img).save(img_dir / f"{img_id}.jpg", quality=95)
        lbl_img = Image.frombytes("P", (label.shape[1], label.shape[0]), np.ascontiguousarray(label).tobytes())
        lbl_img.putpalette(palette)
        lbl_img.save(lbl_dir / f"{img_id}.png")

    splits = {"train": ids[:num_train], "val": ids[num_train:], "trainval": ids}
    for name, lst in splits.items():
        (set_dir / f"{name}.txt").write_text("".join(f"{i}\n" for i in lst))
    return {"root": root, "splits": splits, "num_classes": num_classes, "sizes": sizes}
