"""Scoring a model with the paper's metrics, and writing its predictions as palette PNGs.

Used by ``fcnfast evaluate`` (:func:`evaluate_checkpoint`) and by training's validation
(:func:`evaluate` over :func:`eval_loader`). One confusion matrix per output (the two heads of
the SIFT Flow networks are scored separately) and evaluation, summed over ranks when
torch.distributed is initialised, so each rank can score its own shard.
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
from .backends import resolve_backend
from .datasets import SegmentationDataset, dataset_class, open_dataset, pad_collate
from .datasets.loader import loader_batches
from .devices import resolve_device
from .errors import UserError
from .images import save_label_png
from .metrics import ConfusionMatrix
from .models import build_model, checkpoint_model, load_weights, model_layout
from .paper_results import paper_scores
from .wrappers import unwrap_model

__all__ = [
    "METRIC_NAMES",
    "EvaluationError",
    "eval_loader",
    "evaluate",
    "evaluate_checkpoint",
    "json_safe",
    "run_model",
    "check_dataset_fits",
]

#: The paper's four scores, in the order logs and reports list them (fractions in [0, 1]).
METRIC_NAMES = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")


class EvaluationError(UserError):
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
    """(image, label, id) for the samples ``indices`` of a split (a rank's validation shard)."""

    def __init__(self, base: SegmentationDataset, indices: Sequence[int]) -> None:
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


def _length(loader: Any) -> Optional[int]:
    try:
        return len(loader)
    except TypeError:
        return None


def eval_loader(dataset: SegmentationDataset, *, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                pin_memory: bool = False, worker_init_fn=None) -> torch.utils.data.DataLoader:
    """Batch-1 loader over this rank's shard (``range(rank, n, world_size)``) yielding
    ``(image, label, sizes, names)``. Batch 1 because FCN's output depends on padding."""
    shard = _NamedSamples(dataset, range(rank, len(dataset), world_size))
    return torch.utils.data.DataLoader(shard, batch_size=1, shuffle=False, num_workers=num_workers,
                                       collate_fn=_named_collate, pin_memory=pin_memory,
                                       worker_init_fn=worker_init_fn)


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


def run_model(model: nn.Module, images: Tensor) -> Tuple[Tensor, ...]:
    """``model``'s outputs for a batch as datasets deliver it, always a tuple (one per head): an
    fcnfast FCN gets the batch split into its inputs (colour and HHA for the two-stream network)."""
    net = unwrap_model(model)
    inputs = net.split_input(images) if hasattr(net, "split_input") else (images,)
    out = model(*inputs)
    return out if isinstance(out, tuple) else (out,)


def _task_labels(model: nn.Module, count: int) -> Tuple[str, ...]:
    layout = getattr(unwrap_model(model), "layout", None)
    if layout is not None and len(layout.labels) == count:
        return layout.labels
    return ("semantic",) if count == 1 else tuple(f"output{i}" for i in range(count))


def _scores(cm: ConfusionMatrix) -> Dict[str, Any]:
    m = cm.compute()
    return {**{k: m[k] for k in METRIC_NAMES}, "iu": [float(v) for v in m["iu"]],
            "acc": [float(v) for v in m["acc"]], "pixels": int(cm.hist.sum())}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    num_classes: Union[int, Sequence[int]],
    device: Union[str, torch.device] = "cpu",
    *,
    amp: Optional[str] = None,
    predictions_dir: Optional[os.PathLike] = None,
    progress: bool = False,
) -> Dict[str, Any]:
    """The paper's metrics over ``loader``, from one confusion matrix per output (summed over ranks
    when torch.distributed is initialised, so each rank can pass its own shard).

    ``model`` runs without its DDP / torch.compile wrappers (:func:`fcnfast.wrappers.unwrap_model`),
    in eval mode; its train/eval mode is restored afterwards; an fcnfast FCN gets each batch split
    into its inputs (:func:`run_model`). ``loader`` yields ``(images, labels)``,
    ``(images, labels, sizes)`` (``pad_collate``) or ``(images, labels, sizes, names)``, labels
    (N, H, W) for one output or (N, T, H, W) for T; predictions are cropped to ``sizes``.
    ``num_classes``: an int, or one per output. With ``predictions_dir``, each prediction is
    written there by :func:`fcnfast.images.save_label_png` as ``{name}.png`` (or a running
    number), in a subfolder per label set when there are several.

    Returns the first output's ``pixel_acc``, ``mean_acc``, ``mean_iu``, ``fw_iu`` (fractions),
    per-class ``iu`` and ``acc`` lists and ``pixels`` (counted), and under ``tasks`` the same
    per output, keyed by label set ("semantic", "geometric").
    """
    device = torch.device(device)
    counts = [num_classes] if isinstance(num_classes, int) else list(num_classes)
    # Unwrapped because DDP's forward would sync buffers across ranks whose shards differ in length.
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    labels_of = _task_labels(net, len(counts))
    matrices = [ConfusionMatrix(n, device=device) for n in counts]
    folders: List[Optional[Path]] = [None] * len(counts)
    if predictions_dir is not None:
        folders = [Path(predictions_dir) / (lab if len(counts) > 1 else "") for lab in labels_of]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    counter = 0
    batches = iterable = loader_batches(loader)
    if progress:
        from tqdm import tqdm

        iterable = tqdm(batches, total=_length(loader), desc="evaluate", unit="img", dynamic_ncols=True, leave=False)
    try:
        for batch in iterable:
            images, labels, sizes, names = _unpack_batch(batch)
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if len(counts) == 1 and labels.dim() == 3:
                labels = labels[:, None]
            with autocast(device, amp):
                outputs = run_model(net, images)
            if len(outputs) != len(counts) or labels.shape[1] != len(counts):
                raise ValueError(f"the model has {len(outputs)} output(s) and the labels {labels.shape[1]} set(s); "
                                 f"num_classes names {len(counts)}")
            for t, (scores, cm, folder) in enumerate(zip(outputs, matrices, folders)):
                pred = scores.argmax(1)
                for k, (h, w) in enumerate(sizes):
                    p = pred[k, :h, :w]
                    cm.update(p, labels[k, t, :h, :w])
                    if folder is not None:
                        name = names[k] if names is not None else f"{counter + k:06d}"
                        save_label_png(folder / f"{name}.png", p)
            counter += len(sizes)
    finally:
        batches.close()  # the loader's workers stop now, even when the loop raised
        net.train(was_training)
    tasks = {}
    for label, cm in zip(labels_of, matrices):
        cm.all_reduce()
        tasks[label] = _scores(cm)
    return {**tasks[labels_of[0]], "tasks": tasks}


# ----------------------------------------------------------------------------------------------
# A checkpoint on a split
# ----------------------------------------------------------------------------------------------


def check_dataset_fits(model: str, dataset: str) -> None:
    """ValueError when the reader of ``dataset`` lacks an input or label set model ``model`` takes
    (a SIFT Flow network's geometric labels on VOC); also for an unknown dataset."""
    layout, reader = model_layout(model), dataset_class(dataset)
    lacking = [label for label in layout.labels if label not in reader.label_classes] + [
        m for m in layout.modalities if m not in reader.modalities_available]
    if lacking:
        raise ValueError(f"{model} needs {', '.join(lacking)} that the {dataset} dataset does not have (it has "
                         f"{', '.join((*reader.modalities_available, *reader.label_classes))})")


def _with_paper(name: str, dataset: str, classes: Tuple[int, ...], metrics: Dict[str, Any]) -> Dict[str, Any]:
    """The published scores beside each output's, where the network runs on the data it was published
    on (its dataset and class counts)."""
    layout = model_layout(name)
    same = dataset == layout.dataset and classes == tuple(t.num_classes for t in layout.tasks)
    for label, scores in metrics["tasks"].items():
        paper = paper_scores(name, label) if same else None
        scores["paper"] = None if paper is None else paper._asdict()
    return metrics


def evaluate_checkpoint(
    data: str,
    checkpoint: str,
    *,
    split: Optional[str] = None,
    model: Optional[str] = None,
    dataset: Optional[str] = None,
    num_classes: Optional[Union[int, Sequence[int]]] = None,
    predictions_dir: Optional[str] = None,
    backend: Optional[str] = None,
    device: Union[str, torch.device] = "auto",
    amp: Optional[str] = None,
    num_workers: int = 0,
    progress: bool = False,
) -> Dict[str, Any]:
    """Load ``checkpoint`` (a training checkpoint, a converted caffemodel or a plain FCN state dict)
    and evaluate it on ``data``/``split`` of ``dataset``. Model: ``model``, else the checkpoint's
    ``arch``, else voc-fcn8s; dataset: ``dataset``, else the model's; split: the dataset's
    validation split unless given; classes: ``num_classes``, else the checkpoint's, else its score
    layers' rows; ``device`` as :func:`fcnfast.devices.resolve_device` takes it. Adds ``arch``,
    ``dataset``, ``split``, ``num_classes``, ``class_names`` (per label set under ``tasks``, with
    the paper's published scores under ``paper`` where there are some) and ``images``.

    Raises EvaluationError naming the problem: no data directory, a missing or unreadable
    checkpoint, one that does not fit the model, an unknown model, dataset, amp or device, a backend
    that cannot run on the device (checked before the first image), a bad image.
    """
    if not Path(data).is_dir():
        raise EvaluationError(f"data directory not found: {data}")
    if amp is not None and amp not in AMP_DTYPES:
        raise EvaluationError(f"amp must be one of {tuple(AMP_DTYPES)}, got {amp!r}")
    try:
        found = checkpoint_model(checkpoint, model, num_classes)
        name, layout = found.name, model_layout(found.name)
        dataset = dataset or layout.dataset
        check_dataset_fits(name, dataset)
        split = split or dataset_class(dataset).default_splits[1]
        dev = resolve_device(device, local_rank=0)
        data_set = open_dataset(dataset, data, split, modalities=layout.modalities, labels=layout.labels,
                                num_classes=found.num_classes)
        counts = tuple(data_set.class_counts)
        net = build_model(name, counts if len(layout.tasks) > 1 else counts[0], backend)
        load_weights(net, found.state, name=str(checkpoint))
        resolve_backend(backend, dev, torch.float32)  # fails here, not at the first image
    except (FileNotFoundError, ValueError, TypeError, RuntimeError) as exc:
        raise EvaluationError(str(exc)) from exc
    net.to(dev)
    loader = eval_loader(data_set, num_workers=num_workers, pin_memory=dev.type == "cuda")
    try:
        metrics = evaluate(net, loader, list(counts), dev, amp=amp, predictions_dir=predictions_dir,
                           progress=progress)
    except ValueError as exc:  # an unreadable image or label names its file
        raise EvaluationError(str(exc)) from exc
    for label, scores in metrics["tasks"].items():
        scores["class_names"] = list(data_set.names_of(label))
    metrics.update(arch=name, dataset=dataset, split=split, num_classes=net.num_classes,
                   class_names=list(data_set.class_names), images=len(data_set))
    return _with_paper(name, dataset, tuple(data_set.class_counts), metrics)
