"""Training and evaluating FCNs: the paper's recipe and a modern one, one process or many (torchrun).

::

    from fcnfast.training import TrainConfig, train, evaluate
    summary = train(TrainConfig(data="VOC2012", model="fcn8s", out="runs/fcn8s", preset="modern"))

Presets (DESIGN.md §8; every field can be overridden):

========================  ==================================  ====================================
field                     ``paper`` (Caffe FCN)               ``modern``
========================  ==================================  ====================================
optimizer                 SGD momentum 0.99, wd 5e-4          SGD momentum 0.9, wd 5e-4
biases                    2x lr, no weight decay              2x lr, no weight decay
lr                        fixed; fcn32s / fcn8s-atonce 1e-10, 1e-3, poly decay ``(1 - t/T)^0.9``
                          fcn16s 1e-12, fcn8s 1e-14
batch (per process)       1                                   8 (images padded by ``pad_collate``)
loss                      summed over pixels (``"image"``:    mean over the valid pixels of the
                          per-image sums averaged over the    global batch (``"pixel"``)
                          batch = Caffe's ``normalize:
                          false``; the plain sum at batch 1)
iterations                100k (300k for fcn8s-atonce)        20k
upsampling                frozen bilinear                     frozen bilinear
========================  ==================================  ====================================

**Batches and processes.** ``batch_size`` is per process; the *global batch* is
``batch_size * world_size``. Iteration ``t`` uses samples ``[t*G, (t+1)*G)`` of an endless
stream of per-epoch permutations drawn from ``seed`` (:class:`IterationBatchSampler`); rank ``r``
takes the ``r``-th slice of ``batch_size`` of them. The loss is normalised over the *global*
batch and each rank's loss is multiplied by ``world_size`` to cancel DDP's gradient averaging,
so a run on W processes with batch B takes the same steps as one process with batch W*B
(up to float summation order; with dropout 0, and with images of equal size, since each
process pads only its own slice). Dropout masks and augmentation are drawn from
``(seed, iteration, rank)`` and ``(seed, sample position)``, so ``resume`` continues exactly
where an uninterrupted run would be: same batches, same masks, same losses.

**Outputs** in ``out``: ``checkpoint.pth`` (latest) and ``best.pth`` (best mean IU), each holding
``model_state_dict``, ``optim_state_dict``, ``iteration``, ``best_mean_iu``, ``arch``,
``num_classes``, ``metrics`` and a JSON-safe ``config`` (readable with
``torch.load(weights_only=True)``), written atomically (temp file in the same directory, fsync,
``os.replace``); ``log.csv`` and ``log.jsonl`` (iteration, loss, lr, images/s and, on validation
rows, the paper's four metrics; the JSON lines add per-class IU); ``config.json``.
Only rank 0 writes files and shows the progress bar; validation metrics are summed over ranks.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import IGNORE_INDEX, RandomFlipScale, VOCSegmentation, class_names_for, pad_collate, voc_colormap
from .metrics import ConfusionMatrix
from .models import MODELS, build_model, load_weights, vgg16_init

__all__ = [
    "PRESETS",
    "PAPER_LR",
    "TrainConfig",
    "TrainingError",
    "Trainer",
    "train",
    "evaluate",
    "evaluate_checkpoint",
    "IterationBatchSampler",
    "read_checkpoint",
    "save_checkpoint",
    "save_prediction",
    "resume_config",
    "param_groups",
    "lr_factor",
    "scale_loss",
]

# ----------------------------------------------------------------------------------------------
# Presets and configuration
# ----------------------------------------------------------------------------------------------

#: The paper's fixed learning rates per model (Caffe solvers of fcn.berkeleyvision.org).
PAPER_LR: Dict[str, float] = {"fcn32s": 1e-10, "fcn16s": 1e-12, "fcn8s": 1e-14, "fcn8s-atonce": 1e-10}

PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": dict(
        momentum=0.99, weight_decay=5e-4, batch_size=1, lr_policy="fixed", loss_normalization="image",
        iterations=100_000, val_every=4000, checkpoint_every=4000,
    ),
    "modern": dict(
        lr=1e-3, momentum=0.9, weight_decay=5e-4, batch_size=8, lr_policy="poly", loss_normalization="pixel",
        iterations=20_000, val_every=1000, checkpoint_every=1000,
    ),
}
_PAPER_ITERATIONS = {"fcn8s-atonce": 300_000}

LR_POLICIES = ("fixed", "poly")
LOSS_NORMALIZATIONS = ("image", "pixel", "none")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_CHOICES_HELP = "auto, cpu, cuda or cuda:N"

# Fields that describe this invocation, not the run: never taken from a checkpoint on resume.
_RUNTIME_FIELDS = ("data", "out", "resume", "quiet", "device", "num_workers", "init", "weights")
# Fields a preset fills in (dropped from a resumed config when the preset is changed explicitly).
_PRESET_FIELDS = ("lr", "momentum", "weight_decay", "batch_size", "lr_policy", "loss_normalization",
                  "iterations", "val_every", "checkpoint_every")

_LOSS_TEXT = {"image": "summed per image", "pixel": "averaged over pixels", "none": "summed over the batch"}

CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "best.pth"
LOG_FIELDS = ("iteration", "loss", "lr", "images_per_s", "elapsed_s", "pixel_acc", "mean_acc", "mean_iu", "fw_iu")
METRIC_NAMES = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")


class TrainingError(Exception):
    """A problem with the user's setup (data, checkpoint, options): the CLI prints it without a traceback."""


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs. Fields left ``None`` are filled from ``preset``.

    ``batch_size`` is per process: the global batch is ``batch_size * WORLD_SIZE`` under torchrun.
    ``backend`` None = auto (fused ops: C++ on CPU, Triton/CUDA on GPU). ``amp`` "bf16" | "fp16" |
    None: autocast for the backbone (the head stages run in fp32); fp16 uses a GradScaler.
    ``loss_normalization``: "image" = per-image pixel sums averaged over the global batch (paper),
    "pixel" = mean over the global batch's valid pixels, "none" = sum over the global batch.
    ``dropout`` None keeps the model's 0.5 (fc6/fc7). ``val_every`` / ``checkpoint_every`` 0 = only
    at the end (validation: never). ``log_every``: rows in log.csv, loss averaged in between.
    """

    data: str
    model: str = "fcn8s"
    out: str = "runs/fcn"
    preset: str = "paper"
    iterations: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None
    bias_lr_mult: float = 2.0
    bias_weight_decay: float = 0.0
    lr_policy: Optional[str] = None
    poly_power: float = 0.9
    loss_normalization: Optional[str] = None
    val_every: Optional[int] = None
    checkpoint_every: Optional[int] = None
    log_every: int = 20
    num_classes: int = 21
    train_split: str = "train"
    val_split: str = "val"
    augment: bool = False
    augment_scales: Optional[Tuple[float, float]] = (0.5, 2.0)
    dropout: Optional[float] = None
    init: Optional[str] = None
    weights: Optional[str] = None
    resume: bool = False
    amp: Optional[str] = None
    backend: Optional[str] = None
    device: str = "auto"
    num_workers: int = 2
    seed: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        self.model = str(self.model).lower().replace("_", "-")
        if self.model not in MODELS:
            raise TrainingError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        if self.preset not in PRESETS:
            raise TrainingError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        defaults = dict(PRESETS[self.preset])
        if self.preset == "paper":
            defaults["lr"] = PAPER_LR[self.model]
            defaults["iterations"] = _PAPER_ITERATIONS.get(self.model, defaults["iterations"])
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.backend == "auto":
            self.backend = None
        if self.amp in ("none", ""):
            self.amp = None
        if self.augment_scales is not None:
            self.augment_scales = (float(self.augment_scales[0]), float(self.augment_scales[1]))
        self._validate()

    def _validate(self) -> None:
        def positive_int(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
                raise TrainingError(f"{name} must be an integer >= {0 if allow_zero else 1}, got {value!r}")

        positive_int("iterations")
        positive_int("batch_size")
        positive_int("num_classes")
        positive_int("log_every")
        positive_int("val_every", allow_zero=True)
        positive_int("checkpoint_every", allow_zero=True)
        positive_int("num_workers", allow_zero=True)
        if self.num_classes > 255:
            raise TrainingError(f"num_classes must be <= 255 (255 is the ignore label), got {self.num_classes}")
        for name in ("lr", "momentum", "weight_decay", "bias_lr_mult", "bias_weight_decay", "poly_power"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise TrainingError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr_policy not in LR_POLICIES:
            raise TrainingError(f"lr_policy must be one of {LR_POLICIES}, got {self.lr_policy!r}")
        if self.loss_normalization not in LOSS_NORMALIZATIONS:
            raise TrainingError(f"loss_normalization must be one of {LOSS_NORMALIZATIONS}, got {self.loss_normalization!r}")
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise TrainingError(f"amp must be one of {tuple(AMP_DTYPES)} or None, got {self.amp!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise TrainingError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.init and self.weights:
            raise TrainingError("give --init (VGG16 weights) or --weights (an FCN checkpoint), not both")
        from .backends import BACKENDS

        if self.backend is not None and self.backend not in BACKENDS:
            raise TrainingError(f"unknown backend {self.backend!r}; choose from auto, {', '.join(BACKENDS)}")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-safe dict (strings, numbers, bools, None, lists): stored in checkpoints and config.json."""
        out = dataclasses.asdict(self)
        if out["augment_scales"] is not None:
            out["augment_scales"] = list(out["augment_scales"])
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def resume_config(out: str, overrides: Mapping[str, Any]) -> TrainConfig:
    """The config to continue the run in ``out``: its checkpoint's config, with ``overrides``
    (the options given explicitly, e.g. a longer ``iterations``) on top. Runtime fields
    (data, out, device, num_workers, quiet) always come from ``overrides``.

    Raises TrainingError when there is no checkpoint to resume or it cannot be read.
    """
    path = Path(out) / CHECKPOINT_NAME
    if not path.is_file():
        raise TrainingError(
            f"--resume: no checkpoint to resume in {out} ({path} does not exist); "
            f"start the run without --resume"
        )
    ckpt = read_checkpoint(path)
    saved = dict(ckpt.get("config") or {})
    if not saved:
        raise TrainingError(f"--resume: checkpoint {path} holds no training config (not written by fcnfast train)")
    for name in _RUNTIME_FIELDS:
        saved.pop(name, None)
    if "preset" in overrides and overrides["preset"] != saved.get("preset"):
        for name in _PRESET_FIELDS:
            saved.pop(name, None)
    if "model" in overrides and overrides["model"] is not None:
        asked = str(overrides["model"]).lower().replace("_", "-")
        if asked != ckpt.get("arch", asked):
            raise TrainingError(f"--resume: {path} holds a {ckpt.get('arch')} run, not {asked}")
    merged = {**saved, **{k: v for k, v in overrides.items() if v is not None}}
    merged["resume"] = True
    return TrainConfig.from_dict(merged)


# ----------------------------------------------------------------------------------------------
# Deterministic data order
# ----------------------------------------------------------------------------------------------

_TAG_EPOCH, _TAG_AUGMENT, _TAG_DROPOUT = 1, 2, 3


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (stable across runs, platforms and processes)."""
    return int(np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFFFFFF for v in values]).generate_state(1, np.uint64)[0]) >> 1


class IterationBatchSampler(torch.utils.data.Sampler):
    """Batches for iterations ``start .. stop-1`` of a run, a pure function of (seed, iteration).

    The sample stream is an endless concatenation of permutations of ``range(n)`` (epoch ``e`` is
    permuted by a generator seeded from ``(seed, e)``). Iteration ``t`` owns the global batch of
    stream positions ``[t*G, (t+1)*G)`` with ``G = batch_size * world_size``; rank ``r`` yields
    positions ``[t*G + r*B, t*G + (r+1)*B)``. So the ranks' batches together are exactly the
    batch a single process with batch G draws, and a run resumed at iteration ``t`` sees the
    same batches as one that never stopped. (Unlike ``DistributedSampler``, no sample is
    repeated to even out the shards, and starting mid-epoch needs no skipping.)

    Yields lists of ``(dataset index, stream position)`` pairs; the position seeds augmentation.
    """

    def __init__(self, n: int, batch_size: int, *, start: int, stop: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0) -> None:
        if n < 1:
            raise ValueError("IterationBatchSampler: empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"IterationBatchSampler: rank {rank} outside world size {world_size}")
        self.n, self.batch_size, self.rank, self.world_size, self.seed = n, batch_size, rank, world_size, seed
        self.start, self.stop = start, max(start, stop)
        self._epoch: Optional[int] = None
        self._perm: Optional[List[int]] = None

    def _permutation(self, epoch: int) -> List[int]:
        if self._epoch != epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, _TAG_EPOCH, epoch))
            self._perm = torch.randperm(self.n, generator=g).tolist()
            self._epoch = epoch
        return self._perm  # type: ignore[return-value]

    def position_index(self, position: int) -> int:
        epoch, i = divmod(position, self.n)
        return self._permutation(epoch)[i]

    def batch(self, iteration: int) -> List[Tuple[int, int]]:
        """This rank's (index, position) pairs for 0-based ``iteration``."""
        first = iteration * self.batch_size * self.world_size + self.rank * self.batch_size
        return [(self.position_index(p), p) for p in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        for t in range(self.start, self.stop):
            yield self.batch(t)

    def __len__(self) -> int:
        return self.stop - self.start


class _TrainSamples(torch.utils.data.Dataset):
    """Indexes a dataset by ``(index, stream position)``; augmentation is seeded by the position,
    so it does not depend on worker count, process or resume point."""

    def __init__(self, base: VOCSegmentation, transform: Optional[RandomFlipScale], seed: int) -> None:
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        index, position = key
        image, label = self.base[index]
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_mix(self.seed, _TAG_AUGMENT, position))
                image, label = self.transform(image, label)
        return image, label


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
# Optimisation pieces
# ----------------------------------------------------------------------------------------------


def param_groups(model: nn.Module, lr: float, weight_decay: float, *, bias_lr_mult: float = 2.0,
                 bias_weight_decay: float = 0.0) -> List[Dict[str, Any]]:
    """Two SGD groups, as Caffe's FCN solvers: weights (lr, wd) and biases (bias_lr_mult*lr, no decay).
    Frozen parameters (the bilinear upsampling filters) are left out. Each group keeps its
    multiplier in ``lr_mult`` so schedules scale both."""
    weights, biases = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (biases if name.endswith("bias") else weights).append(p)
    return [
        {"params": weights, "lr": lr, "weight_decay": weight_decay, "lr_mult": 1.0, "name": "weights"},
        {"params": biases, "lr": lr * bias_lr_mult, "weight_decay": bias_weight_decay, "lr_mult": bias_lr_mult,
         "name": "biases"},
    ]


def lr_factor(policy: str, iteration: int, iterations: int, power: float = 0.9) -> float:
    """Multiplier of the base lr for 0-based ``iteration`` of ``iterations``: 1 ("fixed") or
    ``(1 - iteration/iterations) ** power`` ("poly")."""
    if policy == "fixed":
        return 1.0
    if policy == "poly":
        return max(0.0, 1.0 - iteration / iterations) ** power
    raise ValueError(f"unknown lr policy {policy!r}")


def scale_loss(local_sum: Tensor, global_sum: Tensor, global_count: Tensor, *, world_size: int,
               normalization: str, global_batch: int) -> Tuple[Tensor, Tensor]:
    """(loss to backpropagate on this rank, loss of the global batch) from this rank's summed
    pixel loss and the sums over all ranks of the pixel losses and valid-pixel counts.

    The global loss is ``global_sum / d`` with ``d`` = valid pixels ("pixel"), images
    ("image") or 1 ("none") of the global batch. DDP averages gradients over ``world_size``
    ranks, so each rank backpropagates ``local_sum * world_size / d``: the average of those
    gradients is exactly the gradient of the global loss that one process holding the whole
    global batch would compute.
    """
    if normalization == "pixel":
        denom = global_count.clamp(min=1.0)
    elif normalization == "image":
        denom = torch.full((), float(global_batch), dtype=local_sum.dtype, device=local_sum.device)
    elif normalization == "none":
        denom = torch.ones((), dtype=local_sum.dtype, device=local_sum.device)
    else:
        raise ValueError(f"unknown loss normalization {normalization!r}; choose from {LOSS_NORMALIZATIONS}")
    loss = local_sum * (world_size / denom) if world_size > 1 else local_sum / denom
    return loss, global_sum.detach() / denom


def _autocast(device: torch.device, amp: Optional[str]):
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------------------------
# Checkpoints, predictions, logs
# ----------------------------------------------------------------------------------------------


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_enabled() -> bool:
    # FCNFAST_CHECKPOINT_FSYNC=0 skips the fsyncs (the tests do: a 1 GB fsync costs seconds);
    # the writes stay atomic, only durability across a power cut is given up.
    return os.environ.get("FCNFAST_CHECKPOINT_FSYNC", "1") != "0"


def save_checkpoint(obj: Any, path: os.PathLike, *also: os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically: a temp file in the same directory, fsync, ``os.replace``.

    A reader (or a run killed mid-write) sees the old file or the new one, never a torn one.
    ``also``: further paths (same directory) that get the same content, as hard links of the
    finished temp file where the filesystem allows (else copies), each replaced atomically.
    """
    fsync = _fsync_enabled()
    path = Path(path)
    directory = str(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    extra_tmps: List[str] = []
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        for other in also:
            other = Path(other)
            other_tmp = str(other.parent / f".{other.name}.{os.getpid()}.link.tmp")
            with contextlib.suppress(FileNotFoundError):
                os.remove(other_tmp)
            try:
                os.link(tmp, other_tmp)
            except OSError:
                shutil.copyfile(tmp, other_tmp)
                if fsync:
                    with open(other_tmp, "rb+") as f:
                        os.fsync(f.fileno())
            extra_tmps.append(other_tmp)
            os.replace(other_tmp, other)
            extra_tmps.pop()
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(directory)
    except BaseException:
        for leftover in [tmp, *extra_tmps]:
            with contextlib.suppress(OSError):
                os.remove(leftover)
        raise


def _remove_stale_temp_files(out: Path) -> None:
    for name in (CHECKPOINT_NAME, BEST_NAME, "log.csv", "log.jsonl"):
        for tmp in glob.glob(str(out / f".{name}.*.tmp")):
            with contextlib.suppress(OSError):
                os.remove(tmp)


def read_checkpoint(path: os.PathLike, *, mmap: bool = True) -> Dict[str, Any]:
    """A checkpoint dict via ``torch.load(weights_only=True)``; TrainingError names a missing,
    corrupt or truncated file. ``mmap`` reads tensors lazily (cheap when only the config is needed)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"checkpoint not found: {path}")
    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if not mmap or "mmap" not in str(exc):
                raise
            loaded = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:
        raise TrainingError(
            f"checkpoint {path} is corrupt or not a PyTorch checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(loaded, Mapping):
        raise TrainingError(f"checkpoint {path} holds a {type(loaded).__name__}, not a dict")
    return dict(loaded)


def save_prediction(path: os.PathLike, prediction: Any) -> None:
    """Write an H×W label map as a VOC palette PNG (PIL mode 'P', palette = ``voc_colormap()``)."""
    from PIL import Image

    arr = prediction.detach().cpu().numpy() if isinstance(prediction, Tensor) else np.asarray(prediction)
    if arr.ndim != 2:
        raise ValueError(f"save_prediction: expected an (H, W) label map, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"save_prediction: labels must lie in 0..255, got {arr.min()}..{arr.max()}")
    arr = np.ascontiguousarray(arr.astype(np.uint8))
    image = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    image.putpalette(voc_colormap(256).reshape(-1).tolist())
    image.save(path)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class RunLog:
    """``log.csv`` + ``log.jsonl`` in the run directory (rank 0 only). On resume, rows past the
    resumed iteration (logged by the interrupted run after its last checkpoint) are dropped."""

    def __init__(self, out: Path, *, resume_from: Optional[int]) -> None:
        self.csv_path, self.jsonl_path = out / "log.csv", out / "log.jsonl"
        if resume_from is None:
            self.csv_path.write_text(",".join(LOG_FIELDS) + "\n")
            self.jsonl_path.write_text("")
        else:
            self._truncate(resume_from)
        self._csv = open(self.csv_path, "a", newline="")
        self._jsonl = open(self.jsonl_path, "a")
        self._writer = csv.DictWriter(self._csv, fieldnames=LOG_FIELDS, extrasaction="ignore", lineterminator="\n")

    def _truncate(self, iteration: int) -> None:
        rows: List[Dict[str, str]] = []
        if self.csv_path.is_file():
            with open(self.csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("iteration", "").isdigit() and int(r["iteration"]) <= iteration]
        buffer = io.StringIO()
        w = csv.DictWriter(buffer, fieldnames=LOG_FIELDS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        _atomic_write_text(self.csv_path, buffer.getvalue())
        kept: List[str] = []
        if self.jsonl_path.is_file():
            for line in self.jsonl_path.read_text().splitlines():
                try:
                    if int(json.loads(line).get("iteration", -1)) <= iteration:
                        kept.append(line)
                except (ValueError, AttributeError):
                    continue
        _atomic_write_text(self.jsonl_path, "".join(l + "\n" for l in kept))

    def write(self, record: Dict[str, Any]) -> None:
        row = {k: ("" if record.get(k) is None else record[k]) for k in LOG_FIELDS}
        for k in ("loss", "lr", "pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
            if isinstance(row[k], float):
                row[k] = repr(row[k])
        self._writer.writerow(row)
        self._csv.flush()
        self._jsonl.write(json.dumps(_json_safe(record)) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()


def read_log(out: os.PathLike) -> List[Dict[str, Any]]:
    """The rows of ``out/log.csv`` with numbers parsed (empty cells -> None)."""
    rows = []
    with open(Path(out) / "log.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: (None if v in ("", None) else (int(v) if k == "iteration" else float(v))) for k, v in r.items()})
    return rows


# ----------------------------------------------------------------------------------------------
# Distributed setup
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested in (None, "", "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise TrainingError(f"bad --device {requested!r} ({DEVICE_CHOICES_HELP}): {exc}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {requested}: this torch build or machine has no CUDA device")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    elif device.type != "cpu":
        raise TrainingError(f"unsupported --device {requested!r} ({DEVICE_CHOICES_HELP})")
    return device


def setup_distributed(requested_device: str = "auto") -> Tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (env WORLD_SIZE > 1): gloo on CPU, nccl on CUDA.
    A group the caller initialised already is used as it is."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
        return info, _pick_device(requested_device, info.local_rank)
    if world <= 1:
        return DistInfo(), _pick_device(requested_device, 0)
    if not dist.is_available():
        raise TrainingError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, initialized_here=True), device


# ----------------------------------------------------------------------------------------------
# Evaluation
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
    device: Any = "cpu",
    *,
    amp: Optional[str] = None,
    predictions_dir: Optional[os.PathLike] = None,
    progress: bool = False,
) -> Dict[str, Any]:
    """The paper's metrics over ``loader``, from one confusion matrix (summed over ranks when
    torch.distributed is initialised, so each rank can pass its own shard).

    ``loader`` yields ``(images, labels)``, ``(images, labels, sizes)`` (``pad_collate``) or
    ``(images, labels, sizes, names)``; predictions are cropped to ``sizes``. With
    ``predictions_dir``, each prediction is written there as a VOC palette PNG named
    ``{name}.png`` (or a running number). Returns ``pixel_acc``, ``mean_acc``, ``mean_iu``,
    ``fw_iu`` (fractions), per-class ``iu`` and ``acc`` lists, and ``pixels`` (counted).
    """
    device = torch.device(device)
    net = _unwrap(model)
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
            with _autocast(device, amp):
                scores = net(images)
            pred = scores.argmax(1)
            for k, (h, w) in enumerate(sizes):
                p = pred[k, :h, :w]
                cm.update(p, labels[k, :h, :w])
                if predictions_dir is not None:
                    name = names[k] if names is not None else f"{counter:06d}"
                    save_prediction(Path(predictions_dir) / f"{name}.png", p)
                counter += 1
    finally:
        net.train(was_training)
    cm.all_reduce()
    m = cm.compute()
    return {
        "pixel_acc": m["pixel_acc"], "mean_acc": m["mean_acc"], "mean_iu": m["mean_iu"], "fw_iu": m["fw_iu"],
        "iu": [float(v) for v in m["iu"]], "acc": [float(v) for v in m["acc"]],
        "pixels": int(cm.hist.sum()),
    }


def _canonical_arch(arch: Any) -> Optional[str]:
    """A checkpoint's ``arch`` as a model name: fcnfast's ("fcn8s-atonce") or pytorch-fcn's
    class name ("FCN8sAtOnce"); None when absent or not an FCN."""
    if not isinstance(arch, str):
        return None
    name = arch.lower().replace("_", "-")
    name = {"fcn8satonce": "fcn8s-atonce"}.get(name, name)
    return name if name in MODELS else None


def _infer_num_classes(state: Mapping[str, Any]) -> Optional[int]:
    for key in ("score_fr.weight", "module.score_fr.weight"):
        if key in state and isinstance(state[key], Tensor):
            return int(state[key].shape[0])
    return None


def evaluate_checkpoint(
    data: str,
    checkpoint: str,
    *,
    split: str = "val",
    model: Optional[str] = None,
    num_classes: Optional[int] = None,
    predictions_dir: Optional[str] = None,
    backend: Optional[str] = None,
    device: str = "auto",
    amp: Optional[str] = None,
    num_workers: int = 0,
    progress: bool = False,
) -> Dict[str, Any]:
    """Load ``checkpoint`` (a training checkpoint or a plain FCN state dict) and evaluate it on
    ``data``/``split``. Model: ``model``, else the checkpoint's ``arch``, else fcn8s; classes:
    ``num_classes``, else the checkpoint's, else score_fr's rows. Adds ``arch``,
    ``num_classes``, ``class_names`` and ``images`` to the metrics dict."""
    if not Path(data).is_dir():
        raise TrainingError(f"data directory not found: {data}")
    ckpt = read_checkpoint(checkpoint)
    state = ckpt.get("model_state_dict", ckpt)
    arch = _canonical_arch(ckpt.get("arch"))
    name = (model or arch or "fcn8s").lower().replace("_", "-")
    if name not in MODELS:
        raise TrainingError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if model is not None and arch is not None and name != arch:
        raise TrainingError(f"checkpoint {checkpoint} was trained as {arch}, not {name} (drop --model or pass --model {arch})")
    n = num_classes or ckpt.get("num_classes") or _infer_num_classes(state) or 21
    if amp is not None and amp not in AMP_DTYPES:
        raise TrainingError(f"amp must be one of {tuple(AMP_DTYPES)}, got {amp!r}")
    dev = _pick_device(device, 0)
    try:
        dataset = VOCSegmentation(data, split, num_classes=n)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingError(str(exc)) from exc
    net = build_model(name, n, backend)
    try:
        load_weights(net, state)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"checkpoint {checkpoint}: {exc}") from exc
    net.to(dev)
    loader = eval_loader(dataset, num_workers=num_workers, pin_memory=dev.type == "cuda")
    try:
        metrics = evaluate(net, loader, n, dev, amp=amp, predictions_dir=predictions_dir, progress=progress)
    except ValueError as exc:  # an unreadable image or label names its file
        raise TrainingError(str(exc)) from exc
    metrics.update(arch=name, num_classes=n, class_names=list(class_names_for(n)), images=len(dataset))
    return metrics


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def _set_dropout(model: nn.Module, p: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p


class Trainer:
    """One training run described by a :class:`TrainConfig` (see the module docstring).

    ``Trainer(config).run()`` (or :func:`train`) returns a summary dict: ``iteration``,
    ``start_iteration``, ``losses`` (``[(iteration, loss)]`` of this process's steps; global-batch
    losses, identical on every rank), ``best_mean_iu``, ``best_iteration``, ``metrics`` (last
    validation), ``out``, ``world_size``, ``global_batch``.
    """

    def __init__(self, config: TrainConfig, *, on_iteration: Optional[Callable[[int, float], None]] = None) -> None:
        self.config = config
        self.on_iteration = on_iteration

    # -- setup ---------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        if self.dist.is_main and not self.config.quiet:
            if self._bar is not None:
                self._bar.write(message)
            else:
                print(message, flush=True)

    def _datasets(self) -> None:
        cfg = self.config
        if not Path(cfg.data).is_dir():
            raise TrainingError(f"data directory not found: {cfg.data}")
        try:
            self.train_set = VOCSegmentation(cfg.data, cfg.train_split, num_classes=cfg.num_classes)
            self.val_set = (VOCSegmentation(cfg.data, cfg.val_split, num_classes=cfg.num_classes)
                            if cfg.val_every > 0 else None)
        except (FileNotFoundError, ValueError) as exc:
            hint = " (pass --val-every 0 to train without validation)" if cfg.val_split in str(exc) and cfg.val_every else ""
            raise TrainingError(f"{exc}{hint}") from exc

    def _build_model(self, checkpoint: Optional[Mapping[str, Any]]) -> nn.Module:
        cfg = self.config
        torch.manual_seed(_mix(cfg.seed, 0))  # identical initialisation on every rank
        model = build_model(cfg.model, cfg.num_classes, cfg.backend)
        if cfg.dropout is not None:
            _set_dropout(model, cfg.dropout)
        try:
            if checkpoint is not None:
                load_weights(model, checkpoint["model_state_dict"])
            elif cfg.init:
                vgg16_init(model, cfg.init)
            elif cfg.weights:
                load_weights(model, cfg.weights)
        except (FileNotFoundError, ValueError, TypeError) as exc:
            source = "checkpoint" if checkpoint is not None else ("--init" if cfg.init else "--weights")
            raise TrainingError(f"{source}: {exc}") from exc
        model.to(self.device)
        return model

    def _load_resume_checkpoint(self) -> Dict[str, Any]:
        cfg = self.config
        path = Path(cfg.out) / CHECKPOINT_NAME
        if not path.is_file():
            raise TrainingError(
                f"--resume: no checkpoint to resume in {cfg.out} ({path} does not exist); "
                f"start the run without --resume"
            )
        ckpt = read_checkpoint(path, mmap=False)
        missing = [k for k in ("model_state_dict", "optim_state_dict", "iteration") if k not in ckpt]
        if missing:
            raise TrainingError(f"checkpoint {path} is not a training checkpoint (lacks {', '.join(missing)})")
        if ckpt.get("arch", cfg.model) != cfg.model:
            raise TrainingError(f"--resume: {path} holds a {ckpt.get('arch')} run, not {cfg.model}")
        return ckpt

    # -- one step ------------------------------------------------------------------------------

    def _step(self, images: Tensor, labels: Tensor, iteration: int) -> Tensor:
        """One SGD step on this rank's slice; returns the global-batch loss (a 0-dim tensor)."""
        cfg, W = self.config, self.dist.world_size
        torch.manual_seed(_mix(cfg.seed, _TAG_DROPOUT, iteration, self.dist.rank))  # dropout masks
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with _autocast(self.device, cfg.amp):
            scores = self.model(images)
        local_sum = F.cross_entropy(scores.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        count = (labels != IGNORE_INDEX).sum().to(local_sum.dtype)
        if W > 1:
            import torch.distributed as dist

            totals = torch.stack([local_sum.detach(), count])
            dist.all_reduce(totals)
            global_sum, global_count = totals[0], totals[1]
        else:
            global_sum, global_count = local_sum.detach(), count
        loss, global_loss = scale_loss(local_sum, global_sum, global_count, world_size=W,
                                       normalization=cfg.loss_normalization, global_batch=self.global_batch)
        # Zeroing in place keeps the ~0.5 GB of gradient buffers: no re-allocation (page faults on the CPU).
        self.optimizer.zero_grad(set_to_none=False)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return global_loss

    # -- checkpoints and validation ------------------------------------------------------------

    def _checkpoint(self, iteration: int) -> Dict[str, Any]:
        cfg = self.config
        ckpt = {
            "format": "fcnfast-train/1",
            "arch": cfg.model,
            "num_classes": cfg.num_classes,
            "iteration": iteration,
            "best_mean_iu": self.best_mean_iu,
            "best_iteration": self.best_iteration,
            "metrics": _json_safe(self.last_metrics) if self.last_metrics else None,
            "model_state_dict": _unwrap(self.model).state_dict(),
            "optim_state_dict": self.optimizer.state_dict(),
            "config": cfg.to_dict(),
            "world_size": self.dist.world_size,
            "global_batch": self.global_batch,
            "loss_window": [float(self._window_sum), int(self._window_count)],
        }
        if self.scaler is not None:
            ckpt["scaler_state_dict"] = self.scaler.state_dict()
        from . import __version__

        ckpt["fcnfast_version"] = __version__
        return ckpt

    def _validate(self) -> Dict[str, Any]:
        loader = eval_loader(self.val_set, rank=self.dist.rank, world_size=self.dist.world_size,
                             num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda")
        return evaluate(self.model, loader, self.config.num_classes, self.device, amp=self.config.amp)

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> Dict[str, Any]:
        cfg = self.config
        self._bar = None
        self.dist, self.device = setup_distributed(cfg.device)
        try:
            return self._run()
        finally:
            if self._bar is not None:
                self._bar.close()
            if self.dist.initialized_here:
                import torch.distributed as dist

                with contextlib.suppress(Exception):
                    dist.destroy_process_group()

    def _run(self) -> Dict[str, Any]:
        cfg, D = self.config, self.dist
        if cfg.amp == "fp16" and self.device.type != "cuda":
            raise TrainingError("--amp fp16 needs a CUDA device (use --amp bf16 on the CPU)")
        out = Path(cfg.out)
        self.global_batch = cfg.batch_size * D.world_size
        checkpoint = self._load_resume_checkpoint() if cfg.resume else None
        if checkpoint is None and (out / CHECKPOINT_NAME).exists():
            raise TrainingError(
                f"{out} already holds a run ({out / CHECKPOINT_NAME}); pass --resume to continue it, "
                f"or choose another --out"
            )
        self._datasets()
        if D.is_main:
            out.mkdir(parents=True, exist_ok=True)
            _remove_stale_temp_files(out)

        from .backends import resolve_backend

        try:
            head_backend = resolve_backend(cfg.backend, self.device, torch.float32)
        except (RuntimeError, ValueError) as exc:
            raise TrainingError(f"--backend {cfg.backend}: {exc}") from exc
        self.model = self._build_model(checkpoint)
        groups = param_groups(self.model, cfg.lr, cfg.weight_decay, bias_lr_mult=cfg.bias_lr_mult,
                              bias_weight_decay=cfg.bias_weight_decay)
        self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        start = 0
        self.best_mean_iu: Optional[float] = None
        self.best_iteration: Optional[int] = None
        self.last_metrics: Optional[Dict[str, Any]] = None
        self._window_sum, self._window_count = 0.0, 0
        if checkpoint is not None:
            try:
                self.optimizer.load_state_dict(checkpoint["optim_state_dict"])
            except (ValueError, KeyError, RuntimeError) as exc:
                raise TrainingError(f"checkpoint optimizer state does not fit this run: {exc}") from exc
            if self.scaler is not None and "scaler_state_dict" in checkpoint:
                self.scaler.load_state_dict(checkpoint["scaler_state_dict"])
            start = int(checkpoint["iteration"])
            self.best_mean_iu = checkpoint.get("best_mean_iu")
            self.best_iteration = checkpoint.get("best_iteration")
            self.last_metrics = checkpoint.get("metrics")
            window = checkpoint.get("loss_window") or [0.0, 0]
            self._window_sum, self._window_count = float(window[0]), int(window[1])
            saved_batch = checkpoint.get("global_batch")
            if saved_batch not in (None, self.global_batch):
                self._say(f"warning: resuming with global batch {self.global_batch} (was {saved_batch}): "
                          f"the data order from here on differs from the original run's")
            del checkpoint
        if start >= cfg.iterations:
            self._say(f"{out / CHECKPOINT_NAME} is at iteration {start} >= --iterations {cfg.iterations}: nothing to do")
            return self._summary(start, start, [])

        self._say(
            f"train {cfg.model} ({cfg.preset} preset) on {self.device}, heads on {head_backend}: "
            f"{D.world_size} process(es) x batch {cfg.batch_size} = {self.global_batch} images/step, "
            f"lr {cfg.lr:g} {cfg.lr_policy}, momentum {cfg.momentum:g}, wd {cfg.weight_decay:g}, "
            f"loss {_LOSS_TEXT[cfg.loss_normalization]}, iterations {start}->{cfg.iterations}"
            + (f", amp {cfg.amp}" if cfg.amp else "")
        )
        if D.enabled:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                gradient_as_bucket_view=True,
            )
        self.model.train()

        transform = RandomFlipScale(flip=True, scales=cfg.augment_scales) if cfg.augment else None
        sampler = IterationBatchSampler(len(self.train_set), cfg.batch_size, start=start, stop=cfg.iterations,
                                        rank=D.rank, world_size=D.world_size, seed=cfg.seed)
        loader = torch.utils.data.DataLoader(
            _TrainSamples(self.train_set, transform, cfg.seed), batch_sampler=sampler, collate_fn=pad_collate,
            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

        log = RunLog(out, resume_from=start if cfg.resume else None) if D.is_main else None
        if D.is_main:
            info = {**cfg.to_dict(), "world_size": D.world_size, "global_batch": self.global_batch,
                    "device": str(self.device)}
            _atomic_write_text(out / "config.json", json.dumps(info, indent=2) + "\n")

        from tqdm import tqdm

        show_bar = D.is_main and not cfg.quiet and sys.stderr.isatty()
        self._bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {cfg.model}", unit="it",
                         dynamic_ncols=True, disable=not show_bar) if show_bar else None
        losses: List[Tuple[int, float]] = []
        t_run = time.perf_counter()
        rate: Optional[float] = None
        iteration = start
        try:
            t_prev = time.perf_counter()
            for batch in loader:
                images, labels, _ = batch
                step_index = iteration  # 0-based index of this step
                factor = lr_factor(cfg.lr_policy, step_index, cfg.iterations, cfg.poly_power)
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * group.get("lr_mult", 1.0) * factor
                loss_t = self._step(images, labels, step_index)
                loss = float(loss_t)
                iteration = step_index + 1
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"loss is {loss} at iteration {iteration} (lr {cfg.lr * factor:g}); lower --lr"
                        + (" or use --amp bf16" if cfg.amp == "fp16" else "")
                    )
                now = time.perf_counter()
                ips = self.global_batch / max(now - t_prev, 1e-9)
                rate = ips if rate is None else 0.9 * rate + 0.1 * ips
                losses.append((iteration, loss))
                self._window_sum += loss
                self._window_count += 1
                if self.on_iteration is not None:
                    self.on_iteration(iteration, loss)
                if self._bar is not None:
                    self._bar.update(1)
                    self._bar.set_postfix(loss=f"{loss:.4g}", img_s=f"{rate:.1f}", refresh=False)

                validate = cfg.val_every > 0 and (iteration % cfg.val_every == 0 or iteration == cfg.iterations)
                metrics = self._validate() if validate else None
                record: Optional[Dict[str, Any]] = None
                if validate or iteration % cfg.log_every == 0 or iteration == cfg.iterations:
                    record = {"iteration": iteration, "loss": self._window_sum / max(self._window_count, 1),
                              "lr": cfg.lr * factor, "images_per_s": round(rate, 3),
                              "elapsed_s": round(time.perf_counter() - t_run, 3)}
                    self._window_sum, self._window_count = 0.0, 0
                improved = False
                if metrics is not None:
                    self.last_metrics = metrics
                    record.update({k: metrics[k] for k in METRIC_NAMES})
                    record["iu"] = metrics["iu"]
                    improved = math.isfinite(metrics["mean_iu"]) and (
                        self.best_mean_iu is None or metrics["mean_iu"] > self.best_mean_iu)
                    if improved:
                        self.best_mean_iu, self.best_iteration = metrics["mean_iu"], iteration
                    self._say(
                        f"val @ {iteration}: pixel_acc {100 * metrics['pixel_acc']:.2f}  mean_acc "
                        f"{100 * metrics['mean_acc']:.2f}  mean_iu {100 * metrics['mean_iu']:.2f}  fw_iu "
                        f"{100 * metrics['fw_iu']:.2f}  (best mean_iu {100 * (self.best_mean_iu or 0):.2f} "
                        f"@ {self.best_iteration})"
                    )
                if log is not None and record is not None:
                    log.write(record)
                    if self._bar is None and not cfg.quiet and metrics is None:
                        print(f"iter {iteration}/{cfg.iterations}  loss {record['loss']:.6g}  lr {record['lr']:.3g}"
                              f"  {rate:.2f} img/s", flush=True)
                save_latest = (cfg.checkpoint_every > 0 and iteration % cfg.checkpoint_every == 0) or iteration == cfg.iterations
                if D.is_main and (save_latest or improved):
                    ckpt = self._checkpoint(iteration)
                    targets = [out / CHECKPOINT_NAME] if save_latest else []
                    if improved:
                        targets.append(out / BEST_NAME)
                    save_checkpoint(ckpt, targets[0], *targets[1:])
                    del ckpt
                t_prev = time.perf_counter()
        finally:
            if log is not None:
                log.close()
        if D.enabled:
            import torch.distributed as dist

            dist.barrier()
        return self._summary(start, iteration, losses)

    def _summary(self, start: int, iteration: int, losses: List[Tuple[int, float]]) -> Dict[str, Any]:
        return {
            "iteration": iteration, "start_iteration": start, "losses": losses,
            "best_mean_iu": self.best_mean_iu if hasattr(self, "best_mean_iu") else None,
            "best_iteration": getattr(self, "best_iteration", None),
            "metrics": getattr(self, "last_metrics", None), "out": str(self.config.out),
            "world_size": self.dist.world_size, "global_batch": self.config.batch_size * self.dist.world_size,
            "device": str(self.device),
        }


def train(config: TrainConfig, **kwargs: Any) -> Dict[str, Any]:
    """Run :class:`Trainer` for ``config``; see its docstring for the returned summary."""
    return Trainer(config, **kwargs).run()
