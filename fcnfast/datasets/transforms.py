"""Augmentation and batching of (image, label) pairs of any dataset.

Images are float (C, H, W) with any C (3 for colour, 4 for colour + depth, 6 for colour + HHA);
labels are int64 (H, W), or (T, H, W) for T label sets (SIFT Flow's semantic and geometric).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .common import IGNORE_INDEX

__all__ = ["RandomFlipScale", "pad_collate"]


def _check_pair(image: torch.Tensor, label: torch.Tensor) -> bool:
    return image.ndim == 3 and label.ndim in (2, 3) and tuple(image.shape[1:]) == tuple(label.shape[-2:])


class RandomFlipScale:
    """Joint random horizontal flip and rescale of a preprocessed (image, label) pair.

    ``image`` (C, H, W) float is resized bilinearly (align_corners=False), ``label`` (H, W) or
    (T, H, W) int64 with 'nearest-exact' (same pixel-centre convention, so the two stay aligned;
    255 stays 255). Each output side is ``max(1, round(side * s))``.

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
        if not _check_pair(image, label):
            raise ValueError(
                f"RandomFlipScale: expected image (C, H, W) and label (H, W) or (T, H, W) of the same H, W, "
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
            h, w = label.shape[-2:]
            size = (max(1, round(h * s)), max(1, round(w * s)))
            if size != (h, w):
                image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
                stack = F.interpolate(label.reshape(1, -1, h, w).float(), size=size, mode="nearest-exact")
                label = stack.reshape(*label.shape[:-2], *size).to(label.dtype)
        return image.contiguous(), label.contiguous()

    def __repr__(self) -> str:
        return f"RandomFlipScale(flip={self.flip}, scales={self.scales}, seed={self.seed})"


def pad_collate(
    batch: Sequence[Tuple[torch.Tensor, torch.Tensor]],
) -> Tuple[torch.Tensor, torch.Tensor, List[Tuple[int, int]]]:
    """Collate (image, label) pairs of different sizes into one batch (``DataLoader(collate_fn=...)``).

    Images are padded at the bottom/right with 0 (= the mean, after mean subtraction) and labels
    with 255 (ignored by the loss and the metrics) to the largest H and W in the batch.

    Returns ``(images (N, C, H, W), labels (N, H, W) or (N, T, H, W) int64, sizes [(h, w), ...])``
    where ``sizes`` are the samples' unpadded sizes (crop predictions back with ``pred[i, :h, :w]``).
    """
    if len(batch) == 0:
        raise ValueError("pad_collate: empty batch")
    images = [b[0] for b in batch]
    labels = [b[1] for b in batch]
    sizes: List[Tuple[int, int]] = []
    for k, (im, lb) in enumerate(zip(images, labels)):
        if not _check_pair(im, lb) or lb.shape[:-2] != labels[0].shape[:-2] or im.shape[0] != images[0].shape[0]:
            raise ValueError(
                f"pad_collate: sample {k} has image {tuple(im.shape)} and label {tuple(lb.shape)}; "
                f"expected (C, H, W) and (H, W) or (T, H, W), alike across the batch"
            )
        sizes.append((int(lb.shape[-2]), int(lb.shape[-1])))
    H = max(h for h, _ in sizes)
    W = max(w for _, w in sizes)
    out_img = images[0].new_zeros((len(batch), images[0].shape[0], H, W))
    out_lbl = torch.full((len(batch), *labels[0].shape[:-2], H, W), IGNORE_INDEX, dtype=torch.int64)
    for k, (im, lb) in enumerate(zip(images, labels)):
        h, w = sizes[k]
        out_img[k, :, :h, :w] = im
        out_lbl[k, ..., :h, :w] = lb
    return out_img, out_lbl, sizes
