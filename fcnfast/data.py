"""VOC-format segmentation data: loading, Caffe preprocessing, augmentation, batching, toy data.

Preprocessing (docs/design.md §6, the Caffe FCN models' input): RGB uint8 -> BGR float32, minus the
per-channel mean ``MEAN_BGR`` (B, G, R order), as a CHW tensor. Labels are int64 H×W tensors
whose values are class indices 0..n-1 or 255 (ignore / object boundary, as in VOC).

A VOC-format directory holds::

    JPEGImages/{id}.jpg
    SegmentationClass/{id}.png      palette ('P') or grayscale ('L') PNG; pixel value = class index
    ImageSets/Segmentation/{split}.txt   one id per line

Images are read by :func:`fcnfast.images.read_image` (EXIF orientation, every Pillow mode).
This module depends on torch, numpy, Pillow and :mod:`fcnfast.images` only (no fcnfast ops or models).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .images import read_image, voc_colormap

__all__ = [
    "IGNORE_INDEX",
    "MEAN_BGR",
    "VOC_CLASSES",
    "VOCSegmentation",
    "RandomFlipScale",
    "class_names_for",
    "make_toy_dataset",
    "pad_collate",
    "preprocess",
    "read_image",
    "read_label",
    "to_image",
    "voc_colormap",
]

#: Per-channel mean of the Caffe FCN/VGG models, in **BGR** order.
MEAN_BGR: Tuple[float, float, float] = (104.00698793, 116.66876762, 122.67891434)
#: Label value that losses and metrics ignore (VOC object boundaries and "difficult" pixels).
IGNORE_INDEX = 255

#: PASCAL VOC class names, index = label value.
VOC_CLASSES: Tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

PathLike = Union[str, "os.PathLike[str]"]


def class_names_for(num_classes: int) -> Tuple[str, ...]:
    """VOC_CLASSES for 21 classes, else ``("class0", "class1", ...)``."""
    if num_classes == len(VOC_CLASSES):
        return VOC_CLASSES
    return tuple(f"class{i}" for i in range(num_classes))


# ----------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------

_MEAN_BGR_NP = np.asarray(MEAN_BGR, dtype=np.float32)


def preprocess(rgb: np.ndarray) -> torch.Tensor:
    """One RGB image (H×W×3, values 0..255, usually uint8) -> float32 CHW BGR tensor minus MEAN_BGR.

    Accepts a numpy array or a PIL image (converted to RGB). Raises ValueError for any other shape.
    """
    if isinstance(rgb, Image.Image):
        rgb = np.asarray(rgb.convert("RGB"))
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"preprocess: expected an RGB image of shape (H, W, 3), got shape {arr.shape}")
    if arr.dtype.kind not in "uif":
        raise TypeError(f"preprocess: expected a numeric image, got dtype {arr.dtype}")
    bgr = arr[:, :, ::-1].astype(np.float32) - _MEAN_BGR_NP
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))


def to_image(tensor: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
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
    bgr = arr.transpose(1, 2, 0) + _MEAN_BGR_NP
    return np.ascontiguousarray(np.clip(np.rint(bgr[:, :, ::-1]), 0, 255).astype(np.uint8))


def read_label(path: PathLike, num_classes: int = 21) -> np.ndarray:
    """Read a label PNG as uint8 H×W (palette index / gray value = class; 255 = ignore).

    Raises FileNotFoundError if missing; ValueError naming the file if it cannot be decoded,
    is not a palette ('P') or grayscale ('L') image (e.g. an RGB colour rendering of the labels),
    or holds a value outside {0..num_classes-1, 255}.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            lbl = np.array(im) if mode in ("P", "L") else None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read label image {path}: {e}") from e
    if lbl is None:
        raise ValueError(
            f"label image {path} has mode {mode!r}; expected a palette ('P') or grayscale ('L') PNG "
            f"whose pixel values are class indices (an RGB colour rendering cannot be used)"
        )
    counts = np.bincount(lbl.reshape(-1), minlength=256)
    present = np.flatnonzero(counts)
    bad = present[(present >= num_classes) & (present != IGNORE_INDEX)]
    if bad.size:
        raise ValueError(
            f"label image {path} holds values {bad.tolist()[:10]} outside "
            f"{{0..{num_classes - 1}, {IGNORE_INDEX}}} for num_classes={num_classes} "
            f"(wrong palette, or num_classes too small)"
        )
    return lbl


# ----------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------

Transform = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


class VOCSegmentation(torch.utils.data.Dataset):
    """A VOC-format segmentation split (see the module docstring for the layout).

    ``ds[i]`` returns ``(image, label)``: image float32 (3, H, W) = BGR - MEAN_BGR,
    label int64 (H, W) with values in 0..num_classes-1 or 255.

    Args:
        root: dataset directory (e.g. ``VOCdevkit/VOC2012``).
        split: name of ``ImageSets/Segmentation/{split}.txt``.
        transform: optional ``f(image, label) -> (image, label)`` applied after preprocessing
            (e.g. :class:`RandomFlipScale`).
        num_classes: labels must lie in {0..num_classes-1, 255}.

    Errors (each message names the file): missing root or split file, or ids whose image or
    label file is missing -> FileNotFoundError at construction; at ``ds[i]``, an undecodable
    image or label, a label that is not a 'P'/'L' PNG, a label/image size mismatch, or label
    values outside the allowed set -> ValueError.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        *,
        transform: Optional[Transform] = None,
        num_classes: int = 21,
    ):
        if not 1 <= int(num_classes) <= 255:
            raise ValueError(f"VOCSegmentation: num_classes must be in 1..255, got {num_classes}")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.num_classes = int(num_classes)
        self.class_names = class_names_for(self.num_classes)
        if not self.root.is_dir():
            raise FileNotFoundError(f"VOC dataset root not found: {self.root}")
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"split file not found: {split_file}")
        self.split_file = split_file
        self.ids: List[str] = [ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()]
        if not self.ids:
            raise ValueError(f"split file {split_file} lists no image ids")
        self._check_files()

    def image_path(self, i: int) -> Path:
        return self.root / "JPEGImages" / f"{self.ids[i]}.jpg"

    def label_path(self, i: int) -> Path:
        return self.root / "SegmentationClass" / f"{self.ids[i]}.png"

    def _check_files(self) -> None:
        # One directory listing per folder instead of a stat per file: cheap even for SBD's 11k ids.
        for sub, ext, kind in (("JPEGImages", ".jpg", "image"), ("SegmentationClass", ".png", "label")):
            folder = self.root / sub
            have = set(os.listdir(folder)) if folder.is_dir() else set()
            missing = [folder / f"{i}{ext}" for i in self.ids if f"{i}{ext}" not in have]
            if missing:
                more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
                raise FileNotFoundError(
                    f"{kind} file not found: {', '.join(map(str, missing[:3]))}{more} "
                    f"(listed in {self.split_file})"
                )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        img_path, lbl_path = self.image_path(i), self.label_path(i)
        rgb = read_image(img_path)
        lbl = read_label(lbl_path, self.num_classes)
        if lbl.shape != rgb.shape[:2]:
            raise ValueError(
                f"label {lbl_path} is {lbl.shape[0]}x{lbl.shape[1]} (HxW) but image {img_path} "
                f"is {rgb.shape[0]}x{rgb.shape[1]}"
            )
        image = preprocess(rgb)
        label = torch.from_numpy(lbl.astype(np.int64))
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label

    def __repr__(self) -> str:
        return f"VOCSegmentation(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, num_classes={self.num_classes})"


# ----------------------------------------------------------------------------------------------
# Augmentation and batching
# ----------------------------------------------------------------------------------------------


class RandomFlipScale:
    """Joint random horizontal flip and rescale of a preprocessed (image, label) pair.

    ``image`` (3, H, W) float is resized bilinearly (align_corners=False), ``label`` (H, W)
    int64 with 'nearest-exact' (same pixel-centre convention, so the two stay aligned; 255 stays
    255). Each output side is ``max(1, round(side * s))``.

    Args:
        flip: flip left-right with probability 0.5.
        scales: ``(min, max)``: s drawn uniformly from [min, max]; ``None``: no rescaling.
        seed: ``None`` uses torch's global RNG (which DataLoader reseeds per worker and epoch).
            An int gives a private, reproducible stream; inside DataLoader workers it is mixed
            with the worker's seed so workers do not repeat one another.
    """

    def __init__(self, flip: bool = True, scales: Optional[Tuple[float, float]] = (0.5, 2.0), seed: Optional[int] = None):
        if scales is not None:
            if len(scales) != 2 or not (0 < scales[0] <= scales[1]) or not all(map(math.isfinite, scales)):
                raise ValueError(f"RandomFlipScale: scales must be (min, max) with 0 < min <= max, got {scales!r}")
            scales = (float(scales[0]), float(scales[1]))
        self.flip = bool(flip)
        self.scales = scales
        self.seed = seed
        self._gen: Optional[torch.Generator] = None
        self._gen_key: Optional[int] = None

    def _generator(self) -> Optional[torch.Generator]:
        if self.seed is None:
            return None
        info = torch.utils.data.get_worker_info()
        key = -1 if info is None else int(info.seed)
        if self._gen is None or self._gen_key != key:
            s = self.seed if info is None else (self.seed * 0x9E3779B1 + key) % (2**63)
            self._gen = torch.Generator().manual_seed(int(s))
            self._gen_key = key
        return self._gen

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 3 or label.ndim != 2 or image.shape[1:] != label.shape:
            raise ValueError(
                f"RandomFlipScale: expected image (3, H, W) and label (H, W) of the same H, W, "
                f"got image {tuple(image.shape)} and label {tuple(label.shape)}"
            )
        g = self._generator()
        r = torch.rand(2, generator=g).tolist()
        if self.flip and r[0] < 0.5:
            image = image.flip(-1)
            label = label.flip(-1)
        if self.scales is not None:
            lo, hi = self.scales
            s = lo + (hi - lo) * r[1]
            h, w = label.shape
            size = (max(1, round(h * s)), max(1, round(w * s)))
            if size != (h, w):
                image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
                label = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(label.dtype)
        return image.contiguous(), label.contiguous()

    def __repr__(self) -> str:
        return f"RandomFlipScale(flip={self.flip}, scales={self.scales}, seed={self.seed})"


def pad_collate(
    batch: Sequence[Tuple[torch.Tensor, torch.Tensor]],
) -> Tuple[torch.Tensor, torch.Tensor, List[Tuple[int, int]]]:
    """Collate (image, label) pairs of different sizes into one batch (``DataLoader(collate_fn=...)``).

    Images are padded at the bottom/right with 0 (= the mean colour, after mean subtraction) and
    labels with 255 (ignored by the loss and the metrics) to the largest H and W in the batch.

    Returns ``(images (N, 3, H, W), labels (N, H, W) int64, sizes [(h, w), ...])`` where ``sizes``
    are the samples' unpadded sizes (crop predictions back with ``pred[i, :h, :w]``).
    """
    if len(batch) == 0:
        raise ValueError("pad_collate: empty batch")
    images = [b[0] for b in batch]
    labels = [b[1] for b in batch]
    sizes: List[Tuple[int, int]] = []
    for k, (im, lb) in enumerate(zip(images, labels)):
        if im.ndim != 3 or lb.ndim != 2 or tuple(im.shape[1:]) != tuple(lb.shape):
            raise ValueError(
                f"pad_collate: sample {k} has image {tuple(im.shape)} and label {tuple(lb.shape)}; "
                f"expected (C, H, W) and (H, W)"
            )
        sizes.append((int(lb.shape[0]), int(lb.shape[1])))
    H = max(h for h, _ in sizes)
    W = max(w for _, w in sizes)
    C = images[0].shape[0]
    out_img = images[0].new_zeros((len(batch), C, H, W))
    out_lbl = torch.full((len(batch), H, W), IGNORE_INDEX, dtype=torch.int64)
    for k, (im, lb) in enumerate(zip(images, labels)):
        h, w = sizes[k]
        out_img[k, :, :h, :w] = im
        out_lbl[k, :h, :w] = lb
    return out_img, out_lbl, sizes


# ----------------------------------------------------------------------------------------------
# Synthetic VOC-format dataset
# ----------------------------------------------------------------------------------------------


def _class_colours(num_classes: int) -> np.ndarray:
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
    if num_train < 0 or num_val < 0:
        raise ValueError(f"make_toy_dataset: num_train/num_val must be >= 0, got {num_train}/{num_val}")
    if (min_size is None) != (max_size is None):
        raise ValueError("make_toy_dataset: give both min_size and max_size, or neither")
    if min_size is not None and size is not None:
        raise ValueError("make_toy_dataset: give either size or min_size/max_size, not both")
    if min_size is not None:
        lo, hi = _as_hw(min_size, "min_size"), _as_hw(max_size, "max_size")  # type: ignore[arg-type]
        if lo[0] > hi[0] or lo[1] > hi[1]:
            raise ValueError(f"make_toy_dataset: min_size {lo} exceeds max_size {hi}")
    else:
        lo = hi = _as_hw(size if size is not None else (64, 96), "size")

    num_classes = int(num_classes)
    root = Path(root)
    img_dir = root / "JPEGImages"
    lbl_dir = root / "SegmentationClass"
    set_dir = root / "ImageSets" / "Segmentation"
    for d in (img_dir, lbl_dir, set_dir):
        d.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    colours = _class_colours(num_classes)
    palette = voc_colormap(256).reshape(-1).tolist()
    ids = [f"toy_{k:06d}" for k in range(num_train + num_val)]
    sizes: Dict[str, Tuple[int, int]] = {}

    for img_id in ids:
        H = int(rng.integers(lo[0], hi[0] + 1))
        W = int(rng.integers(lo[1], hi[1] + 1))
        sizes[img_id] = (H, W)
        # Background: smooth low-saturation gradient + per-pixel noise.
        base = rng.uniform(90, 160)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
        grad = rng.uniform(-25, 25) * (yy / H - 0.5) + rng.uniform(-25, 25) * (xx / W - 0.5)
        img = base + grad[..., None] + rng.uniform(-6, 6, size=3) + rng.normal(0, 8, size=(H, W, 3))
        label = np.zeros((H, W), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(1, num_classes))
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
        # VOC-style 255 ring: every pixel with a differently labelled 4-neighbour (both sides of an edge).
        edge = np.zeros((H, W), dtype=bool)
        dy = label[1:, :] != label[:-1, :]
        dx = label[:, 1:] != label[:, :-1]
        edge[1:, :] |= dy
        edge[:-1, :] |= dy
        edge[:, 1:] |= dx
        edge[:, :-1] |= dx
        label[edge] = IGNORE_INDEX

        Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8)).save(
            img_dir / f"{img_id}.jpg", quality=95
        )
        lbl_img = Image.frombytes("P", (W, H), np.ascontiguousarray(label).tobytes())
        lbl_img.putpalette(palette)
        lbl_img.save(lbl_dir / f"{img_id}.png")

    splits = {"train": ids[:num_train], "val": ids[num_train:], "trainval": ids}
    for name, lst in splits.items():
        (set_dir / f"{name}.txt").write_text("".join(f"{i}\n" for i in lst))
    return {"root": root, "splits": splits, "num_classes": num_classes, "sizes": sizes}
