"""FCN-32s / 16s / 8s / 8s-at-once with the exact Caffe geometry (docs/design.md §6), built from
:mod:`fcnfast.models.layout`.

Layer names are Caffe's (and pytorch-fcn's), so their state dicts load with ``strict=True``.
The heads are :class:`fcnfast.nn.UpsampleCropAdd` stages: one fused op per upsampling stage,
``backend="reference"`` reproduces the plain PyTorch graph exactly.
"""

from __future__ import annotations

from typing import ClassVar, Dict, List, Optional, Tuple

from torch import Tensor, nn

from ..backends import check_backend_name
from ..nn import UpsampleCropAdd
from .layout import (
    CONV_KERNEL, CONV_PADDING, DROPOUT, FC6_KERNEL, FC_CHANNELS, FIRST_CONV_PADDING, LAYOUTS,
    POOL_KERNEL, POOL_STRIDE, SCALED_POOLS, VGG16_BLOCKS, ModelLayout, pool_channels, pool_scale_attr,
)
from .weights import unwrap_state_dict

__all__ = ["FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce"]


class _FCNBase(nn.Module):
    """VGG16 backbone in Caffe's FCN form: conv1_1 pads by 100, ceil-mode pools, fc6/fc7 as convs.

    Each subclass names its :class:`~fcnfast.models.layout.ModelLayout` (``class FCN8s(_FCNBase,
    layout="fcn8s")``), from which the score layers, the head stages and the forward are built.
    Initialisation follows the paper: score layers start at zero and upsampling layers are frozen
    bilinear filters; the backbone keeps PyTorch's default init until
    :func:`fcnfast.models.vgg16_init` transplants VGG16 weights.
    """

    layout: ClassVar[ModelLayout]
    head_names: Tuple[str, ...] = ()
    pool4_scale: float = 1.0
    pool3_scale: float = 1.0

    def __init_subclass__(cls, layout: Optional[str] = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if layout is not None:
            cls.layout = LAYOUTS[layout]
            cls.head_names = cls.layout.head_names
            for pool, scale in zip(SCALED_POOLS, cls.layout.pool_scales):
                setattr(cls, pool_scale_attr(pool), scale)

    def __init__(self, num_classes: int = 21, backend: Optional[str] = None) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        check_backend_name(backend)
        self.num_classes = num_classes
        # Registration order is the state dict's order and the order random_init_ draws in.
        for block, (cin, cout, n) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, n + 1):
                pad = FIRST_CONV_PADDING if (block, i) == (1, 1) else CONV_PADDING
                conv = nn.Conv2d(cin if i == 1 else cout, cout, CONV_KERNEL, padding=pad)
                setattr(self, f"conv{block}_{i}", conv)
                setattr(self, f"relu{block}_{i}", nn.ReLU(inplace=True))
            setattr(self, f"pool{block}", nn.MaxPool2d(POOL_KERNEL, stride=POOL_STRIDE, ceil_mode=True))
        self.fc6 = nn.Conv2d(VGG16_BLOCKS[-1][1], FC_CHANNELS, FC6_KERNEL)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(DROPOUT)
        self.fc7 = nn.Conv2d(FC_CHANNELS, FC_CHANNELS, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(DROPOUT)
        self.score_fr = nn.Conv2d(FC_CHANNELS, num_classes, 1)
        for stage in self.layout.skip_stages:
            setattr(self, stage.skip_score, nn.Conv2d(pool_channels(stage.skip_pool), num_classes, 1))
        for stage in self.layout.heads:
            head = UpsampleCropAdd(num_classes, num_classes, stage.kernel, stage.stride, offset=stage.offset,
                                   skip_offset=stage.skip_offset, backend=backend)
            setattr(self, stage.name, head)
        self._zero_scores()

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

    def forward(self, x: Tensor) -> Tensor:
        """(N, num_classes, H, W) scores of a (N, 3, H, W) preprocessed batch: score_fr, then each head
        stage in layout order (adding its scaled, scored pool skip), the last one cropped to (H, W)."""
        return self.score_and_upsample(x.shape[2:], *self._backbone(x))

    def score_and_upsample(self, size, pool3: Tensor, pool4: Tensor, h: Tensor) -> Tensor:
        """The forward after the backbone (``_backbone``'s three outputs), for input size (H, W)."""
        pools = {3: pool3, 4: pool4}
        h = self.score_fr(h)
        last = len(self.layout.heads) - 1
        for i, stage in enumerate(self.layout.heads):
            skip = None
            if stage.skip_pool is not None:
                tap = pools[stage.skip_pool]
                scale = getattr(self, pool_scale_attr(stage.skip_pool))
                if scale != 1.0:
                    tap = tap * scale
                skip = getattr(self, stage.skip_score)(tap)
            h = getattr(self, stage.name)(h, skip=skip, size=size if i == last else None)
        return h

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
        return super().load_state_dict(unwrap_state_dict(state_dict), strict=strict, assign=assign)


class FCN32s(_FCNBase, layout="fcn32s"):
    """FCN-32s: score_fr upsampled 32x by ``upscore`` (k64 s32), window at 19."""


class FCN16s(_FCNBase, layout="fcn16s"):
    """FCN-16s: upscore2 (k4 s2) + score_pool4 cropped at 5, then upscore16 (k32 s16) at 27."""


class FCN8s(_FCNBase, layout="fcn8s"):
    """FCN-8s: as 16s to fuse_pool4, upscore_pool4 (k4 s2) + score_pool3 cropped at 9,
    then upscore8 (k16 s8) with its window at 31."""


class FCN8sAtOnce(FCN8s, layout="fcn8s-atonce"):
    """FCN-8s trained at once: pool4 scaled by 0.01 and pool3 by 0.0001 before their score convs.

    ``fcnfast.optimize`` folds the scales into the score weights for inference.
    """
