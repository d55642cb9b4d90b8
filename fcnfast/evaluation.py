"""Scoring a model with the paper's metrics, and writing its predictions as palette PNGs.

Used by ``fcnfast evaluate`` (:func:`evaluate_checkpoint`) and by training's validation
(:func:`evaluate` over :func:`eval_loader`). One confusion matrix per evaluation, summed over
ranks when torch.distributed is initialised, so each rank can score its own shard.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from .amp import AMP_DTYPES, autocast
from .checkpoints import read_checkpoint
from .data import VOCSegmentation, class_names_for, pad_collate
from .devices import resolve_device
from .images import save_label_png
from .metrics import ConfusionMatrix
from .models import DEFAULT_MODEL, build_model, canonical_model_name, load_weights, lookup_model_name
from .wrappers import unwrap_model

__all__ = [
    "METRIC_NAMES",
    "EvaluationError",
    "checkpoint_model",
    "eval_loader",
    "evaluate",
    "evaluate_checkpoint",
    "json_safe",
]

#: The paper's four scores, in the order logs and reports list them (fractions in [0, 1]).
METRIC_NAMES = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")


class EvaluationError(Exception):
    """A problem with the user's setup (data, checkpoint, options): the CLI prints it without a traceback."""


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None and numpy scalars/arrays as Python numbers/lists,
    so ``json.dumps`` writes standard JSON (metrics are NaN for classes never seen)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer)):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------
# Loading a split for evaluation
# ----------------------------------------------------------------------------------------------


class _NamedSamples(torch.utils.data.Dataset):
    """(image, label, id) for the samples ``indices`` of a VOC split (a rank's validation shard)."""

    def __init__(self, base: VOCSegmentation, indices: Sequence[int]) -> None:
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        image, label = self.base[index]
        return image, label, self.base.ids[index]


def _named_collate(batch):
    images, labels, sizes = pad_collate([(b[0], b[1]) for b in batch])
    return images, labels, sizes, [b[2] for b in batch]


def eval_loader(dataset: VOCSegmentation, *, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Batch-1 loader over this rank's shard (``range(rank, n, world_size)``) yielding
    ``(image, label, sizes, names)``. Batch 1 because FCN's output depends on padding."""
    shard = _NamedSamples(dataset, range(rank, len(dataset), world_size))
    return torch.utils.data.DataLoader(shard, batch_size=1, shuffle=False, num_workers=num_workers,
                                       collate_fn=_named_collate, pin_memory=pin_memory)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


def _unpack_batch(batch: Any) -> Tuple[Tensor, Tensor, List[Tuple[int, int]], Optional[List[str]]]:
    if isinstance(batch, Mapping):
        images, labels = batch["image"], batch["label"]
        sizes, names = batch.get("sizes"), batch.get("names")
    else:
        images, labels = batch[0], batch[1]
        sizes = batch[2] if len(batch) > 2 else None
        names = batch[3] if len(batch) > 3 else None
    if images.dim() == 3:
        images, labels = images[None], labels[None]
    if sizes is None:
        sizes = [tuple(labels.shape[-2:])] * images.shape[0]
    return images, labels, [tuple(int(v) for v in s) for s in sizes], names


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    num_classes: int,
    device: Union[str, torch.device] = "cpu",
    *,
    amp: Optional[str] = None,
    predictions_dir: Optional[os.PathLike] = None,
    progress: bool = False,
) -> Dict[str, Any]:
    """The paper's metrics over ``loader``, from one confusion matrix (summed over ranks when
    torch.distributed is initialised, so each rank can pass its own shard).

    ``model`` runs without its DDP / torch.compile wrappers (:func:`fcnfast.wrappers.unwrap_model`),
    in eval mode; its train/eval mode is restored afterwards. ``loader`` yields ``(images, labels)``,
    ``(images, labels, sizes)`` (``pad_collate``) or ``(images, labels, sizes, names)``;
    predictions are cropped to ``sizes``. With ``predictions_dir``, each prediction is written
    there by :func:`fcnfast.images.save_label_png` as ``{name}.png`` (or a running number).
    Returns ``pixel_acc``, ``mean_acc``, ``mean_iu``, ``fw_iu`` (fractions), per-class ``iu``
    and ``acc`` lists, and ``pixels`` (counted).
    """
    device = torch.device(device)
    # Unwrapped because DDP's forward would sync buffers across ranks whose shards differ in length.
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    cm = ConfusionMatrix(num_classes, device=device)
    if predictions_dir is not None:
        Path(predictions_dir).mkdir(parents=True, exist_ok=True)
    counter = 0
    iterable = loader
    if progress:
        from tqdm import tqdm

        iterable = tqdm(loader, desc="evaluate", unit="img", dynamic_ncols=True, leave=False)
    try:
        for batch in iterable:
            images, labels, sizes, names = _unpack_batch(batch)
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast(device, amp):
                scores = net(images)
            pred = scores.argmax(1)
            for k, (h, w) in enumerate(sizes):
                p = pred[k, :h, :w]
                cm.update(p, labels[k, :h, :w])
                if predictions_dir is not None:
                    name = names[k] if names is not None else f"{counter:06d}"
                    save_label_png(Path(predictions_dir) / f"{name}.png", p)
                counter += 1
    finally:
        net.train(was_training)
    cm.all_reduce()
    m = cm.compute()
    return {
        **{k: m[k] for k in METRIC_NAMES},
        "iu": [float(v) for v in m["iu"]], "acc": [float(v) for v in m["acc"]],
        "pixels": int(cm.hist.sum()),
    }


# ----------------------------------------------------------------------------------------------
# A checkpoint on a split
# ----------------------------------------------------------------------------------------------


def _infer_num_classes(state: Mapping[str, Any]) -> Optional[int]:
    for key in ("score_fr.weight", "module.score_fr.weight"):
        if key in state and isinstance(state[key], Tensor):
            return int(state[key].shape[0])
    return None


def checkpoint_model(ckpt: Mapping[str, Any], checkpoint: str, model: Optional[str] = None,
                     num_classes: Optional[int] = None) -> Tuple[str, int, Mapping[str, Any]]:
    """(model name, classes, state dict) of a read checkpoint: ``model``, else its ``arch``, else
    fcn8s; ``num_classes``, else its own, else score_fr's rows, else 21. Raises ValueError for an
    unknown model or one that contradicts the checkpoint's ``arch``."""
    state = ckpt.get("model_state_dict", ckpt)
    arch = ckpt.get("arch")
    arch = lookup_model_name(arch) if isinstance(arch, str) else None  # fcnfast's or pytorch-fcn's name
    name = canonical_model_name(model or arch or DEFAULT_MODEL)
    if model is not None and arch is not None and name != arch:
        raise ValueError(f"checkpoint {checkpoint} was trained as {arch}, not {name} "
                         f"(drop --model or pass --model {arch})")
    return name, num_classes or ckpt.get("num_classes") or _infer_num_classes(state) or 21, state


def evaluate_checkpoint(
    data: str,
    checkpoint: str,
    *,
    split: str = "val",
    model: Optional[str] = None,
    num_classes: Optional[int] = None,
    predictions_dir: Optional[str] = None,
    backend: Optional[str] = None,
    device: Union[str, torch.device] = "auto",
    amp: Optional[str] = None,
    num_workers: int = 0,
    progress: bool = False,
) -> Dict[str, Any]:
    """Load ``checkpoint`` (a training checkpoint or a plain FCN state dict) and evaluate it on
    ``data``/``split``. Model: ``model``, else the checkpoint's ``arch``, else fcn8s; classes:
    ``num_classes``, else the checkpoint's, else score_fr's rows; ``device`` as
    :func:`fcnfast.devices.resolve_device` takes it. Adds ``arch``, ``num_classes``,
    ``class_names`` and ``images`` to the metrics dict.

    Raises EvaluationError naming the problem: no data directory, a missing or unreadable
    checkpoint, one that does not fit the model, an unknown model, amp or device, a bad image.
    """
    if not Path(data).is_dir():
        raise EvaluationError(f"data directory not found: {data}")
    try:
        ckpt = read_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        raise EvaluationError(str(exc)) from exc
    try:
        name, n, state = checkpoint_model(ckpt, checkpoint, model, num_classes)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    if amp is not None and amp not in AMP_DTYPES:
        raise EvaluationError(f"amp must be one of {tuple(AMP_DTYPES)}, got {amp!r}")
    try:
        dev = resolve_device(device, local_rank=0)
        dataset = VOCSegmentation(data, split, num_classes=n)
    except (FileNotFoundError, ValueError) as exc:
        raise EvaluationError(str(exc)) from exc
    net = build_model(name, n, backend)
    try:
        load_weights(net, state)
    except (ValueError, TypeError) as exc:
        raise EvaluationError(f"checkpoint {checkpoint}: {exc}") from exc
    net.to(dev)
    loader = eval_loader(dataset, num_workers=num_workers, pin_memory=dev.type == "cuda")
    try:
        metrics = evaluate(net, loader, n, dev, amp=amp, predictions_dir=predictions_dir, progress=progress)
    except ValueError as exc:  # an unreadable image or label names its file
        raise EvaluationError(str(exc)) from exc
    metrics.update(arch=name, num_classes=n, class_names=list(class_names_for(n)), images=len(dataset))
    return metrics
