"""What a training run is: :class:`TrainConfig`, the ``paper`` and ``modern`` presets, validation.

Presets (every field can be overridden):

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
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional, Tuple

from ..amp import AMP_DTYPES
from ..errors import UserError
from ..models import DEFAULT_MODEL, canonical_model_name
from .optim import LOSS_NORMALIZATIONS, LR_POLICIES

__all__ = ["PAPER_LR", "PRESETS", "PRESET_FIELDS", "RUNTIME_FIELDS", "TrainConfig", "TrainingError"]

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
# The paper preset's iterations where a model's solver differs from the preset's.
_PAPER_ITERATIONS = {"fcn8s-atonce": 300_000}

#: Fields that describe this invocation, not the run: never taken from a checkpoint on resume.
RUNTIME_FIELDS = ("data", "out", "resume", "quiet", "device", "num_workers", "init", "weights")
#: Fields a preset fills in (dropped from a resumed config when the preset is changed explicitly).
PRESET_FIELDS = tuple(sorted({name for preset in PRESETS.values() for name in preset}))


class TrainingError(UserError):
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
    ``device``: as :func:`fcnfast.devices.resolve_device` takes it, resolved when the run starts.

    Construction validates every field and raises TrainingError naming the first bad one.
    """

    data: str
    model: str = DEFAULT_MODEL
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
        try:
            self.model = canonical_model_name(str(self.model))
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
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
        from ..backends import BACKENDS

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
        """The config of ``values`` (as :meth:`to_dict` writes them); unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
