"""FCN-32s / 16s / 8s / 8s-at-once with the exact Caffe geometry (DESIGN.md §6).

Layer names are Caffe's (and pytorch-fcn's), so their state dicts load with ``strict=True``.
The heads are :class:`fcnfast.nn.UpsampleCropAdd` stages: one fused op per upsampling stage,
``backend="reference"`` reproduces the plain PyTorch graph exactly.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..backends import check_backend_name
from ..nn import UpsampleCropAdd

# (in channels, out channels, convs) of VGG16's five blocks.
VGG16_BLOCKS: Tuple[Tuple[int, int, int], ...] = (
    (3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3),
)
CONV_NAMES: Tuple[str, ...] = tuple(
    f"conv{block}_{i}" for block, (_, _, n) in enumerate(VGG16_BLOCKS, start=1) for i in range(1, n + 1)
)


class _FCNBase(nn.Module):
    """VGG16 backbone in Caffe's FCN form: conv1_1 pads by 100, ceil-mode pools, fc6/fc7 as convs.

    Subclasses add the score layers and heads. Initialisation follows the paper: score layers
    start at zero and upsampling layers are frozen bilinear filters; the backbone keeps
    PyTorch's default init until :func:`fcnfast.models.vgg16_init` transplants VGG16 weights.
    """

    head_names: Tuple[str, ...] = ()
    pool4_scale: float = 1.0
    pool3_scale: float = 1.0

    def __init__(self, num_classes: int = 21, backend: Optional[str] = None) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        check_backend_name(backend)
        self.num_classes = num_classes
        for block, (cin, cout, n) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, n + 1):
                pad = 100 if (block, i) == (1, 1) else 1
                setattr(self, f"conv{block}_{i}", nn.Conv2d(cin if i == 1 else cout, cout, 3, padding=pad))
                setattr(self, f"relu{block}_{i}", nn.ReLU(inplace=True))
            setattr(self, f"pool{block}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)

    def _zero_scores(self) -> None:
        for name, module in self.named_children():
            if name.startswith("score"):
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)

    def _backbone(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(pool3, pool4, drop7) for a (N, 3, H, W) input."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FCN expects a (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
        h = x
        taps: Dict[int, Tensor] = {}
        for block, (_, _, n) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, n + 1):
                h = getattr(self, f"relu{block}_{i}")(getattr(self, f"conv{block}_{i}")(h))
            h = getattr(self, f"pool{block}")(h)
            taps[block] = h
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        return taps[3], taps[4], h

    def heads(self) -> List[UpsampleCropAdd]:
        return [getattr(self, name) for name in self.head_names]

    def set_backend(self, backend: Optional[str]) -> "_FCNBase":
        """Run every head stage on ``backend`` (None = auto). Returns self."""
        check_backend_name(backend)
        for head in self.heads():
            head.backend = backend
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` that also takes a checkpoint dict holding ``model_state_dict``
        (pytorch-fcn's format) and strips a DataParallel/DDP ``module.`` prefix."""
        from .weights import unwrap_state_dict

        return super().load_state_dict(unwrap_state_dict(state_dict), strict=strict, assign=assign)


class FCN32s(_FCNBase):
    """FCN-32s: score_fr upsampled 32x by ``upscore`` (k64 s32), window at 19."""

    head_names = ("upscore",)

    def __init__(self, num_classes: int = 21, backend: Optional[str] = None) -> None:
        super().__init__(num_classes, backend)
        self.upscore = UpsampleCropAdd(num_classes, num_classes, 64, 32, offset=19, backend=backend)
        self._zero_scores()

    def forward(self, x: Tensor) -> Tensor:
        _, _, h = self._backbone(x)
        return self.upscore(self.score_fr(h), size=x.shape[2:])


class FCN16s(_FCNBase):
    """FCN-16s: upscore2 (k4 s2) + score_pool4 cropped at 5, then upscore16 (k32 s16) at 27."""

    head_names = ("upscore2", "upscore16")

    def __init__(self, num_classes: int = 21, backend: Optional[str] = None) -> None:
        super().__init__(num_classes, backend)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.upscore2 = UpsampleCropAdd(num_classes, num_classes, 4, 2, skip_offset=5, backend=backend)
        self.upscore16 = UpsampleCropAdd(num_classes, num_classes, 32, 16, offset=27, backend=backend)
        self._zero_scores()

    def forward(self, x: Tensor) -> Tensor:
        _, pool4, h = self._backbone(x)
        fuse_pool4 = self.upscore2(self.score_fr(h), skip=self.score_pool4(pool4))
        return self.upscore16(fuse_pool4, size=x.shape[2:])


class FCN8s(_FCNBase):
    """FCN-8s: as 16s to fuse_pool4, upscore_pool4 (k4 s2) + score_pool3 cropped at 9,
    then upscore8 (k16 s8) with its window at 31."""

    head_names = ("upscore2", "upscore_pool4", "upscore8")

    def __init__(self, num_classes: int = 21, backend: Optional[str] = None) -> None:
        super().__init__(num_classes, backend)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        self.upscore2 = UpsampleCropAdd(num_classes, num_classes, 4, 2, skip_offset=5, backend=backend)
        self.upscore_pool4 = UpsampleCropAdd(num_classes, num_classes, 4, 2, skip_offset=9, backend=backend)
        self.upscore8 = UpsampleCropAdd(num_classes, num_classes, 16, 8, offset=31, backend=backend)
        self._zero_scores()

    def forward(self, x: Tensor) -> Tensor:
        pool3, pool4, h = self._backbone(x)
        if self.pool4_scale != 1.0:
            pool4 = pool4 * self.pool4_scale
        if self.pool3_scale != 1.0:
            pool3 = pool3 * self.pool3_scale
        fuse_pool4 = self.upscore2(self.score_fr(h), skip=self.score_pool4(pool4))
        fuse_pool3 = self.upscore_pool4(fuse_pool4, skip=self.score_pool3(pool3))
        return self.upscore8(fuse_pool3, size=x.shape[2:])


class FCN8sAtOnce(FCN8s):
    """FCN-8s trained at once: pool4 scaled by 0.01 and pool3 by 0.0001 before their score convs.

    ``fcnfast.optimize`` folds the scales into the score weights for inference.
    """

    pool4_scale = 0.01
    pool3_scale = 0.0001


MODELS = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s, "fcn8s-atonce": FCN8sAtOnce}


def build_model(name: str, num_classes: int = 21, backend: Optional[str] = None) -> _FCNBase:
    """``build_model("fcn8s")``: a model by its CLI name (fcn32s, fcn16s, fcn8s, fcn8s-atonce)."""
    key = name.lower().replace("_", "-")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[key](num_classes=num_classes, backend=backend)
