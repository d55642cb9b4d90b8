"""The FCN paper's segmentation metrics, accumulated in one confusion matrix (docs/design.md §9).

One :class:`ConfusionMatrix` is fed every (prediction, ground truth) pair of a dataset and
the metrics are computed once at the end, from the summed matrix — never averaged per image:

- ``hist[gt, pred]`` counts pixels with ``0 <= gt < n``; every other target value
  (255 = VOC "ignore"/boundary, -1, anything >= n) drops out.
- pixel acc = ``diag.sum() / hist.sum()``
- mean acc  = ``nanmean(diag / hist.sum(1))`` (classes absent from the ground truth are NaN, excluded)
- IU        = ``diag / (hist.sum(1) + hist.sum(0) - diag)`` (NaN for a class absent from both
  ground truth and prediction; 0 for a class only ever predicted)
- mean IU   = ``nanmean(IU)``
- fwIU      = ``sum over freq > 0 of freq * IU`` with ``freq = hist.sum(1) / hist.sum()``

This module depends on torch and numpy only (no fcnfast ops or models).
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

__all__ = ["ConfusionMatrix", "metrics_from_hist"]

ArrayLike = Union[torch.Tensor, np.ndarray]


def _as_label_tensor(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as an integer torch tensor (numpy arrays are converted, on the CPU).

    Raises TypeError for anything that is not an integer tensor/array (floats, bools,
    complex, Python objects), naming the argument and its dtype.
    """
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "iu":
            raise TypeError(
                f"ConfusionMatrix.update: {name} must hold integer class labels, "
                f"got a numpy array of dtype {x.dtype} and shape {tuple(x.shape)}"
            )
        # int64 up front: torch lacks some numpy unsigned dtypes, and n*gt+pred must not overflow.
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
    if isinstance(x, torch.Tensor):
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise TypeError(
                f"ConfusionMatrix.update: {name} must hold integer class labels, "
                f"got a tensor of dtype {x.dtype} and shape {tuple(x.shape)} "
                f"(take .argmax(1) of the scores first)"
            )
        return x
    raise TypeError(
        f"ConfusionMatrix.update: {name} must be a torch.Tensor or numpy.ndarray, "
        f"got {type(x).__name__}"
    )


def metrics_from_hist(hist: ArrayLike) -> Dict[str, Any]:
    """The paper's metrics from a ``[gt, pred]`` confusion matrix (see the module docstring).

    Returns a dict with Python floats ``pixel_acc``, ``mean_acc``, ``mean_iu``, ``fw_iu``
    (fractions in [0, 1], not percentages) and float64 numpy arrays ``iu`` and ``acc``
    (one entry per class, NaN where undefined). An empty matrix gives NaN everywhere.
    """
    if isinstance(hist, torch.Tensor):
        hist = hist.detach().cpu().numpy()
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"metrics_from_hist: hist must be square [n, n], got shape {h.shape}")
    diag = np.diag(h)
    gt_count = h.sum(1)
    pred_count = h.sum(0)
    total = h.sum()
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN slice
        pixel_acc = diag.sum() / total if total > 0 else float("nan")
        acc = diag / gt_count
        mean_acc = np.nanmean(acc) if acc.size else float("nan")
        iu = diag / (gt_count + pred_count - diag)
        mean_iu = np.nanmean(iu) if iu.size else float("nan")
        if total > 0:
            freq = gt_count / total
            present = freq > 0
            fw_iu = (freq[present] * iu[present]).sum()
        else:
            fw_iu = float("nan")
    return {
        "pixel_acc": float(pixel_acc),
        "mean_acc": float(mean_acc),
        "mean_iu": float(mean_iu),
        "fw_iu": float(fw_iu),
        "iu": iu,
        "acc": acc,
    }


class ConfusionMatrix:
    """Accumulates ``hist[gt, pred]`` over a whole dataset, on the inputs' device.

    Args:
        num_classes: n >= 1; valid labels are 0 .. n-1.
        device: where ``hist`` lives. ``None`` (default): adopt the device of the first
            :meth:`update` (so CUDA predictions are counted on the GPU with no transfer);
            later updates on another device are moved to ``hist``'s device.

    Attributes:
        hist: int64 tensor of shape (n, n), rows = ground truth, columns = prediction.
    """

    def __init__(self, num_classes: int, device: Optional[Union[str, torch.device]] = None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise TypeError(f"ConfusionMatrix: num_classes must be an int, got {type(num_classes).__name__}")
        if num_classes < 1:
            raise ValueError(f"ConfusionMatrix: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self._device_fixed = device is not None
        self.hist = torch.zeros(
            (self.num_classes, self.num_classes),
            dtype=torch.int64,
            device=torch.device(device) if device is not None else "cpu",
        )
        self._empty = True  # no update since construction/reset: device may still be adopted

    @property
    def device(self) -> torch.device:
        return self.hist.device

    def reset(self) -> None:
        """Zero the matrix (keeps ``num_classes`` and the device)."""
        self.hist.zero_()
        self._empty = True

    @torch.no_grad()
    def update(self, pred: ArrayLike, target: ArrayLike) -> "ConfusionMatrix":
        """Add one batch: ``pred`` and ``target`` are integer label maps of the same shape.

        Any shape works (H×W, N×H×W, ...); both may be torch tensors (CPU or CUDA, on the same
        device) or numpy arrays. Pixels whose target is outside [0, n) (255, -1, >= n) are
        ignored. Every prediction must lie in [0, n).

        Raises:
            TypeError: non-integer dtype (e.g. float scores instead of labels), or not a tensor/array.
            ValueError: shapes differ, tensors on different devices, or a prediction outside [0, n).
        Returns ``self``.
        """
        p = _as_label_tensor(pred, "pred")
        t = _as_label_tensor(target, "target")
        if p.shape != t.shape:
            raise ValueError(
                f"ConfusionMatrix.update: pred and target must have the same shape, "
                f"got pred {tuple(p.shape)} and target {tuple(t.shape)}"
            )
        if isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor) and p.device != t.device:
            raise ValueError(
                f"ConfusionMatrix.update: pred and target must be on the same device, "
                f"got pred on {p.device} and target on {t.device}"
            )
        if p.device != t.device:  # one numpy array, one tensor: follow the tensor
            dev = p.device if isinstance(pred, torch.Tensor) else t.device
            p, t = p.to(dev), t.to(dev)
        if p.device != self.hist.device:
            if self._empty and not self._device_fixed:
                self.hist = torch.zeros_like(self.hist, device=p.device)
            else:
                p, t = p.to(self.hist.device), t.to(self.hist.device)
        self._empty = False

        n = self.num_classes
        p = p.reshape(-1).long()
        t = t.reshape(-1).long()
        if p.numel() == 0:
            return self
        lo, hi = torch.aminmax(p)
        lo, hi = int(lo), int(hi)
        if lo < 0 or hi >= n:
            raise ValueError(
                f"ConfusionMatrix.update: predictions must lie in [0, {n}) for num_classes={n}, "
                f"got values in [{lo}, {hi}] (pred shape {tuple(pred.shape)})"
            )
        valid = (t >= 0) & (t < n)
        idx = t[valid] * n + p[valid]
        self.hist += torch.bincount(idx, minlength=n * n).reshape(n, n)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts into this one (same ``num_classes``); returns ``self``."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"ConfusionMatrix.merge: expected a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"ConfusionMatrix.merge: num_classes differ ({self.num_classes} vs {other.num_classes})"
            )
        self.hist += other.hist.to(self.hist.device)
        self._empty = self._empty and other._empty
        return self

    def all_reduce(self, group: Any = None) -> "ConfusionMatrix":
        """Sum ``hist`` over all ranks of ``torch.distributed`` (in place); returns ``self``.

        A no-op when torch.distributed is unavailable or not initialised, so single-process
        evaluation can call it unconditionally. With the NCCL backend ``hist`` must be on the
        rank's CUDA device (it is, when the updates were CUDA tensors); gloo works on the CPU.
        Every rank must call it (it is a collective).
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.hist, op=dist.ReduceOp.SUM, group=group)
            self._empty = False
        return self

    def compute(self) -> Dict[str, Any]:
        """The paper's metrics from the accumulated matrix (one host sync).

        Returns a dict: floats ``pixel_acc``, ``mean_acc``, ``mean_iu``, ``fw_iu`` (fractions,
        NaN if nothing was counted) and float64 numpy arrays ``iu`` and ``acc`` of length n
        (NaN for a class with no ground-truth pixels in ``acc``; NaN in ``iu`` for a class that
        is neither in the ground truth nor predicted). See the module docstring for formulas.
        """
        return metrics_from_hist(self.hist)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, device={self.hist.device}, pixels={int(self.hist.sum())})"
