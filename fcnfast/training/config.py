"""What a training run is: :class:`TrainConfig`, the ``paper`` and ``modern`` presets, validation.

Presets (every field can be overridden):

========================  ==================================  ====================================
field                     ``paper`` (Caffe FCN)               ``modern``
========================  ==================================  ====================================
optimizer                 SGD momentum 0.99, wd 5e-4          SGD momentum 0.9, wd 5e-4
biases                    2x lr, no weight decay              2x lr, no weight decay
lr                        fixed, the model's release solver   1e-3, poly decay ``(1 - t/T)^0.9``
                          (:data:`PAPER_RECIPES`)
batch (per process)       1                                   8 (images padded by ``pad_collate``)
loss                      summed over pixels (``"image"``:    mean over the valid pixels of the
                          per-image sums averaged over the    global batch (``"pixel"``)
                          batch = Caffe's ``normalize:
                          false``; the plain sum at batch 1)
iterations                the release's (:data:`PAPER_RECIPES`) 20k
upsampling                frozen bilinear                     frozen bilinear
========================  ==================================  ====================================

A model with two outputs (SIFT Flow's semantic and geometric heads) trains on the sum of the two
losses, each normalised as ``loss_normalization`` says, as the release sums its two loss layers.
The dataset defaults to the model's (``voc`` for voc-fcn8s); classes and splits to the dataset's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

from ..amp import AMP_DTYPES
from ..datasets import dataset_class
from ..errors import UserError
from ..evaluation import check_dataset_fits
from ..models import DEFAULT_MODEL, canonical_model_name, model_layout
from .optim import LOSS_NORMALIZATIONS, LR_POLICIES

__all__ = ["PAPER_LR", "PAPER_RECIPES", "PRESETS", "PRESET_FIELDS", "RUNTIME_FIELDS", "TrainConfig", "TrainingError"]


class Recipe(NamedTuple):
    """A release solver: fixed base lr, iterations (solve.py's steps), validation interval."""

    lr: float
    iterations: int
    val_every: int


_VOC, _CONTEXT, _SMALL = (100_000, 4000), (400_000, 8000), (100_000, 2000)
#: The paper preset per model: each release folder's solver.prototxt and solve.py.
PAPER_RECIPES: Dict[str, Recipe] = {
    "voc-fcn32s": Recipe(1e-10, *_VOC), "voc-fcn16s": Recipe(1e-12, *_VOC), "voc-fcn8s": Recipe(1e-14, *_VOC),
    "voc-fcn8s-atonce": Recipe(1e-10, 300_000, 4000),
    "pascalcontext-fcn32s": Recipe(1e-10, *_CONTEXT), "pascalcontext-fcn16s": Recipe(1e-12, *_CONTEXT),
    "pascalcontext-fcn8s": Recipe(1e-14, *_CONTEXT),
    "nyud-fcn32s-color": Recipe(1e-10, *_SMALL), "nyud-fcn32s-hha": Recipe(1e-10, *_SMALL),
    "nyud-fcn32s-color-d": Recipe(1e-10, *_SMALL), "nyud-fcn32s-color-hha": Recipe(1e-12, *_SMALL),
    "siftflow-fcn32s": Recipe(1e-10, *_SMALL), "siftflow-fcn16s": Recipe(1e-12, *_SMALL),
    "siftflow-fcn8s": Recipe(1e-12, *_SMALL),
}
#: The paper's fixed learning rate per model.
PAPER_LR: Dict[str, float] = {name: recipe.lr for name, recipe in PAPER_RECIPES.items()}

PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": dict(  # lr, iterations, val_every and checkpoint_every: the model's PAPER_RECIPES
        momentum=0.99, weight_decay=5e-4, batch_size=1, lr_policy="fixed", loss_normalization="image",
    ),
    "modern": dict(
        lr=1e-3, momentum=0.9, weight_decay=5e-4, batch_size=8, lr_policy="poly", loss_normalization="pixel",
        iterations=20_000, val_every=1000, checkpoint_every=1000,
    ),
}

#: Fields that describe this invocation, not the run: never taken from a checkpoint on resume.
RUNTIME_FIELDS = ("data", "out", "resume", "quiet", "device", "num_workers", "init", "weights")
#: Fields a preset fills in (dropped from a resumed config when the preset is changed explicitly).
PRESET_FIELDS = tuple(sorted({name for preset in PRESETS.values() for name in preset} | set(Recipe._fields)
                             | {"checkpoint_every"}))


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
    ``dataset`` None = the model's; ``num_classes`` None = the dataset's, per output (a list for a
    model with several); ``train_split`` / ``val_split`` None = the dataset's.

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
    dataset: Optional[str] = None
    num_classes: Union[None, int, List[int]] = None
    train_split: Optional[str] = None
    val_split: Optional[str] = None
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
            recipe = PAPER_RECIPES[self.model]
            defaults.update(recipe._asdict(), checkpoint_every=recipe.val_every)
        self._resolve_data()
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

    def _resolve_data(self) -> None:
        """Fill dataset, classes and splits from the model and its dataset; check they fit."""
        layout = model_layout(self.model)
        self.dataset = self.dataset or layout.dataset
        try:
            check_dataset_fits(self.model, self.dataset)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        reader = dataset_class(self.dataset)
        self.train_split = self.train_split or reader.default_splits[0]
        self.val_split = self.val_split or reader.default_splits[1]
        if self.num_classes is None:
            counts = [len(reader.label_classes[lab]) for lab in layout.labels]
            self.num_classes = counts[0] if len(counts) == 1 else counts
        elif not isinstance(self.num_classes, int):
            self.num_classes = [int(n) for n in self.num_classes]
        want = len(layout.tasks)
        if (want == 1) != isinstance(self.num_classes, int) or (want > 1 and len(self.num_classes) != want):
            raise TrainingError(f"num_classes of {self.model} must be {'an integer' if want == 1 else f'{want} integers'} "
                                f"({', '.join(layout.labels)}), got {self.num_classes!r}")

    def _validate(self) -> None:
        def positive_int(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
                raise TrainingError(f"{name} must be an integer >= {0 if allow_zero else 1}, got {value!r}")

        positive_int("iterations")
        positive_int("batch_size")
        positive_int("log_every")
        positive_int("val_every", allow_zero=True)
        positive_int("checkpoint_every", allow_zero=True)
        positive_int("num_workers", allow_zero=True)
        counts = [self.num_classes] if isinstance(self.num_classes, int) else self.num_classes
        if any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 255 for n in counts):
            raise TrainingError(f"num_classes must be integers in 1..255 (255 is the ignore label), "
                                f"got {self.num_classes!r}")
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
