"""The FCN layer layout, declared once: VGG16 backbone, score layers and head geometry per model.

Everything that builds, adopts or names an FCN reads this module: the constructors in
:mod:`fcnfast.models.fcn`, :func:`fcnfast.optimize` (which checks foreign modules against it),
the model registry (names) and the CLI (choices). It is plain data, so it imports nothing.

The numbers are the Caffe release of Long, Shelhamer and Darrell (CVPR 2015), which
pytorch-fcn copies: conv1_1 pads by 100, pools are 2x2/2 in ceil mode, fc6 is a 7x7 conv,
the final crops start at 19 (32s), 27 (16s) and 31 (8s), the skip crops at 5 (pool4) and
9 (pool3), and FCN-8s-at-once scales pool4 by 0.01 and pool3 by 0.0001 before scoring them.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

# (in channels, out channels, convs) of VGG16's five 3x3-conv blocks; block b ends in pool{b}.
VGG16_BLOCKS: Tuple[Tuple[int, int, int], ...] = (
    (3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3),
)
CONV_NAMES: Tuple[str, ...] = tuple(
    f"conv{block}_{i}" for block, (_, _, n) in enumerate(VGG16_BLOCKS, start=1) for i in range(1, n + 1)
)
CONV_KERNEL = 3
CONV_PADDING = 1
# conv1_1 pads by 100 so that every crop of every head stays inside its input (any H, W >= 1).
FIRST_CONV_PADDING = 100
POOL_KERNEL = 2
POOL_STRIDE = 2  # in ceil mode: Caffe's pooling rounds up

# fc6 / fc7 as convolutions (the paper's convolutionalised classifier), then score_fr.
FC_CHANNELS = 4096
FC6_KERNEL = 7
DROPOUT = 0.5
FC_NAMES: Tuple[str, ...] = ("fc6", "fc7")
FINAL_SCORE = "score_fr"
#: Every nn.Conv2d of the backbone, in forward order (score layers excluded).
BACKBONE_CONVS: Tuple[str, ...] = CONV_NAMES + FC_NAMES

#: The pools whose score layer input a model may scale, in the order of ``pool_scales``: a model's
#: ``pool4_scale`` / ``pool3_scale`` multiply pool4 / pool3 before score_pool4 / score_pool3.
SCALED_POOLS: Tuple[int, int] = (4, 3)
#: FCN-8s-at-once's input scales of (score_pool4, score_pool3).
AT_ONCE_SCALES: Tuple[float, float] = (0.01, 0.0001)


def pool_scale_attr(pool: int) -> str:
    """The model attribute holding pool{pool}'s input scale ("pool4_scale")."""
    return f"pool{pool}_scale"


def pool_channels(block: int) -> int:
    """Channels of pool{block}'s output (the input of score_pool{block})."""
    return VGG16_BLOCKS[block - 1][1]


class HeadStage(NamedTuple):
    """One upsampling stage: a ``kernel`` x ``kernel`` transposed conv with ``stride`` of the scores
    so far, its window starting at ``offset``; with ``skip_pool`` = b, plus score_pool{b}(pool{b})
    read from ``skip_offset``. The last stage of a model is cropped to the input size; the others
    keep their whole output from ``offset`` on, and the skip is cropped to that."""

    name: str
    kernel: int
    stride: int
    offset: int = 0
    skip_pool: Optional[int] = None
    skip_offset: int = 0

    @property
    def skip_score(self) -> Optional[str]:
        """The score layer feeding this stage's skip (Caffe's name), or None."""
        return None if self.skip_pool is None else f"score_pool{self.skip_pool}"


class ModelLayout(NamedTuple):
    """One FCN variant: its registry ``name``, the paper's ``title``, its head stages in forward
    order, and the input scales of (score_pool4, score_pool3) (1.0: none)."""

    name: str
    title: str
    heads: Tuple[HeadStage, ...]
    pool_scales: Tuple[float, float] = (1.0, 1.0)

    @property
    def head_names(self) -> Tuple[str, ...]:
        return tuple(stage.name for stage in self.heads)

    @property
    def skip_stages(self) -> Tuple[HeadStage, ...]:
        return tuple(stage for stage in self.heads if stage.skip_pool is not None)

    @property
    def skip_scores(self) -> Tuple[str, ...]:
        """Score layers besides score_fr, in forward order."""
        return tuple(stage.skip_score for stage in self.skip_stages)

    @property
    def conv_layers(self) -> Tuple[str, ...]:
        """Every nn.Conv2d of the model: backbone, score_fr and the skip score layers."""
        return BACKBONE_CONVS + (FINAL_SCORE,) + self.skip_scores

    @property
    def at_once(self) -> bool:
        return self.pool_scales != (1.0, 1.0)


_UPSCORE2 = HeadStage("upscore2", 4, 2, skip_pool=4, skip_offset=5)
_FCN8S_HEADS = (
    _UPSCORE2,
    HeadStage("upscore_pool4", 4, 2, skip_pool=3, skip_offset=9),
    HeadStage("upscore8", 16, 8, offset=31),
)

#: Every model, by registry name, in the order the CLI lists them.
LAYOUTS: Dict[str, ModelLayout] = {
    layout.name: layout
    for layout in (
        ModelLayout("fcn32s", "FCN-32s", (HeadStage("upscore", 64, 32, offset=19),)),
        ModelLayout("fcn16s", "FCN-16s", (_UPSCORE2, HeadStage("upscore16", 32, 16, offset=27))),
        ModelLayout("fcn8s", "FCN-8s", _FCN8S_HEADS),
        ModelLayout("fcn8s-atonce", "FCN-8s at-once", _FCN8S_HEADS, AT_ONCE_SCALES),
    )
}


def at_once_pair(layout: ModelLayout) -> Optional[Tuple[ModelLayout, ModelLayout]]:
    """(plain, at-once) layouts with ``layout``'s heads, or None when it has no at-once variant."""
    twins = [other for other in LAYOUTS.values() if other.heads == layout.heads]
    plain = [t for t in twins if not t.at_once]
    scaled = [t for t in twins if t.at_once]
    return (plain[0], scaled[0]) if plain and scaled else None


__all__ = [
    "VGG16_BLOCKS", "CONV_NAMES", "CONV_KERNEL", "CONV_PADDING", "FIRST_CONV_PADDING", "POOL_KERNEL",
    "POOL_STRIDE", "FC_CHANNELS", "FC6_KERNEL", "DROPOUT", "FC_NAMES", "FINAL_SCORE", "BACKBONE_CONVS",
    "SCALED_POOLS", "AT_ONCE_SCALES", "pool_scale_attr", "pool_channels", "HeadStage", "ModelLayout",
    "LAYOUTS", "at_once_pair",
]
