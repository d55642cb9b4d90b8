"""The FCN layer layout, declared once: VGG16 trunks, score layers and head geometry per network.

Everything that builds, adopts or names an FCN reads this module: the constructors in
:mod:`fcnfast.models.fcn`, :func:`fcnfast.optimize` (which checks foreign modules against it),
the Caffe converter (layer names and shapes), the model registry (names) and the CLI (choices).
It is plain data, so it imports nothing.

The networks are those of the paper's reference release (fcn.berkeleyvision.org), one layout per
release folder, named after it. The numbers are the release's prototxt files: conv1_1 pads by
100, pools are 2x2/2 in ceil mode, fc6 is a 7x7 conv, the final crops start at 19 (32s), 27 (16s)
and 31 (8s), the skip crops at 5 (pool4) and 9 (pool3), and FCN-8s-at-once scales pool4 by 0.01
and pool3 by 0.0001 before scoring them. Three release networks go beyond one RGB image in and
one score map out:

* ``nyud-fcn32s-color-d``: colour and depth concatenated, a 4-channel ``conv1_1_bgrd``;
* ``nyud-fcn32s-color-hha``: two trunks (layer names suffixed ``color`` / ``hha``) whose
  score_fr maps are summed with weights 0.5 / 0.5 (Caffe's Eltwise coeff) before one upscore;
* ``siftflow-fcn*``: one trunk, two head chains (suffixed ``_sem`` / ``_geo``, 33 and 3 classes).
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple, Union

# (in channels, out channels, convs) of VGG16's five 3x3-conv blocks; block b ends in pool{b}.
# The first block's input width is the stream's (3 for an image, 4 for colour + depth).
VGG16_BLOCKS: Tuple[Tuple[int, int, int], ...] = (
    (3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3),
)
CONV_NAMES: Tuple[str, ...] = tuple(
    f"conv{block}_{i}" for block, (_, _, n) in enumerate(VGG16_BLOCKS, start=1) for i in range(1, n + 1)
)
FIRST_CONV = CONV_NAMES[0]
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
#: Every nn.Conv2d of a plain trunk, in forward order (score layers excluded).
BACKBONE_CONVS: Tuple[str, ...] = CONV_NAMES + FC_NAMES

#: The pools whose score layer input a model may scale, in the order of ``pool_scales``: a model's
#: ``pool4_scale`` / ``pool3_scale`` multiply pool4 / pool3 before score_pool4 / score_pool3.
SCALED_POOLS: Tuple[int, int] = (4, 3)
#: FCN-8s-at-once's input scales of (score_pool4, score_pool3).
AT_ONCE_SCALES: Tuple[float, float] = (0.01, 0.0001)
#: Caffe's name of the Scale layer in front of score_pool{p} (FCN-8s-at-once).
SCALE_LAYER = "scale_pool{pool}"

#: Input channels of each modality a stream may read (the NYUDv2 release: colour, HHA, log depth).
MODALITY_CHANNELS: Dict[str, int] = {"color": 3, "hha": 3, "depth": 1}


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
        """The score layer feeding this stage's skip (Caffe's name, without a task suffix), or None."""
        return None if self.skip_pool is None else f"score_pool{self.skip_pool}"


class Stream(NamedTuple):
    """One VGG16 trunk. ``modalities``: what its input holds, concatenated along channels in this
    order (widths in :data:`MODALITY_CHANNELS`); ``suffix``: appended to every layer name of the
    trunk, score_fr included ("color": conv1_1color ... score_frcolor); ``first_conv``: the first
    conv's name before the suffix (``conv1_1_bgrd`` when it takes colour + depth); ``weight``: its
    coefficient when the streams' score_fr maps are summed (Caffe's Eltwise coeff)."""

    modalities: Tuple[str, ...] = ("color",)
    suffix: str = ""
    first_conv: str = FIRST_CONV
    weight: float = 1.0

    @property
    def channels(self) -> int:
        return sum(MODALITY_CHANNELS[m] for m in self.modalities)

    def layer(self, base: str) -> str:
        """Caffe's name of trunk layer ``base`` ("conv1_1", "pool3", "fc7", ...) in this stream."""
        return (self.first_conv if base == FIRST_CONV else base) + self.suffix


class Task(NamedTuple):
    """One chain of score and head layers: the ``label`` set it predicts (a dataset's label names:
    "semantic", "geometric"), its default class count, and the suffix on its layer names."""

    label: str
    num_classes: int
    suffix: str = ""


class ModelLayout(NamedTuple):
    """One FCN: its registry ``name`` (the release folder), the paper's ``title``, its head stages in
    forward order, the input scales of (score_pool4, score_pool3) (1.0: none), its output ``tasks``
    and input ``streams``, the ``dataset`` it was trained on, the release ``prototxt`` its layers
    were checked against, and older names that still ``aliases`` it."""

    name: str
    title: str
    heads: Tuple[HeadStage, ...]
    pool_scales: Tuple[float, float] = (1.0, 1.0)
    tasks: Tuple[Task, ...] = (Task("semantic", 21),)
    streams: Tuple[Stream, ...] = (Stream(),)
    dataset: str = "voc"
    prototxt: str = ""
    aliases: Tuple[str, ...] = ()

    # -- names -------------------------------------------------------------------------------------

    def head_name(self, stage: HeadStage, task: Task) -> str:
        return stage.name + task.suffix

    def skip_score_name(self, stage: HeadStage, task: Task) -> Optional[str]:
        return None if stage.skip_score is None else stage.skip_score + task.suffix

    def score_name(self, task: Task, stream: Stream) -> str:
        """The 1x1 conv scoring ``stream``'s fc7 for ``task`` (score_fr, score_frcolor, score_fr_sem)."""
        return FINAL_SCORE + stream.suffix + task.suffix

    @property
    def head_names(self) -> Tuple[str, ...]:
        """Every head stage module, task by task, each task's in forward order."""
        return tuple(self.head_name(stage, task) for task in self.tasks for stage in self.heads)

    @property
    def skip_stages(self) -> Tuple[HeadStage, ...]:
        return tuple(stage for stage in self.heads if stage.skip_pool is not None)

    @property
    def skip_scores(self) -> Tuple[str, ...]:
        """Score layers of the skips, task by task, in forward order."""
        return tuple(self.skip_score_name(stage, task) for task in self.tasks for stage in self.skip_stages)

    @property
    def score_layers(self) -> Tuple[str, ...]:
        """Every score conv: the streams' score_fr per task, then the skip scores."""
        finals = tuple(self.score_name(task, stream) for task in self.tasks for stream in self.streams)
        return finals + self.skip_scores

    @property
    def trunk_convs(self) -> Tuple[str, ...]:
        """Every trunk conv (conv1_1 .. fc7), stream by stream."""
        return tuple(stream.layer(base) for stream in self.streams for base in BACKBONE_CONVS)

    @property
    def conv_layers(self) -> Tuple[str, ...]:
        """Every nn.Conv2d of the model: the trunks, then the score layers."""
        return self.trunk_convs + self.score_layers

    # -- inputs and outputs ------------------------------------------------------------------------

    @property
    def default_num_classes(self) -> Union[int, Tuple[int, ...]]:
        """The release's class count: an int for one task, a tuple (one per task) for several."""
        counts = tuple(task.num_classes for task in self.tasks)
        return counts[0] if len(counts) == 1 else counts

    @property
    def input_channels(self) -> Tuple[int, ...]:
        """Channels of each forward argument (one per stream)."""
        return tuple(stream.channels for stream in self.streams)

    @property
    def modalities(self) -> Tuple[str, ...]:
        """Every modality the model reads, in the order its inputs concatenate them."""
        return tuple(m for stream in self.streams for m in stream.modalities)

    @property
    def labels(self) -> Tuple[str, ...]:
        """The label set of each output, in the order forward returns them."""
        return tuple(task.label for task in self.tasks)

    @property
    def plain(self) -> bool:
        """One RGB trunk and one score map: the shape of the VOC models and of pytorch-fcn's."""
        return len(self.streams) == 1 and len(self.tasks) == 1 and self.streams[0] == Stream() and (
            self.tasks[0].suffix == "")

    @property
    def at_once(self) -> bool:
        return self.pool_scales != (1.0, 1.0)


def _check(layout: ModelLayout) -> ModelLayout:
    """Reject combinations the forward does not define: several streams are summed before the first
    head, so they take no skips and feed one task; every suffix must keep layer names apart."""
    if len(layout.streams) > 1 and (layout.skip_stages or len(layout.tasks) > 1):
        raise ValueError(f"{layout.name}: several streams take no skip stages and one task")
    for what, suffixes in (("stream", [s.suffix for s in layout.streams]), ("task", [t.suffix for t in layout.tasks])):
        if len(set(suffixes)) != len(suffixes):
            raise ValueError(f"{layout.name}: two {what}s share the suffix {suffixes}")
    if any(m not in MODALITY_CHANNELS for m in layout.modalities):
        raise ValueError(f"{layout.name}: unknown modality in {layout.modalities}")
    return layout


_UPSCORE = HeadStage("upscore", 64, 32, offset=19)
_UPSCORE2 = HeadStage("upscore2", 4, 2, skip_pool=4, skip_offset=5)
_FCN32S_HEADS = (_UPSCORE,)
_FCN16S_HEADS = (_UPSCORE2, HeadStage("upscore16", 32, 16, offset=27))
_FCN8S_HEADS = (
    _UPSCORE2,
    HeadStage("upscore_pool4", 4, 2, skip_pool=3, skip_offset=9),
    HeadStage("upscore8", 16, 8, offset=31),
)
_VARIANTS = (("fcn32s", "FCN-32s", _FCN32S_HEADS), ("fcn16s", "FCN-16s", _FCN16S_HEADS), ("fcn8s", "FCN-8s", _FCN8S_HEADS))

_PASCAL_CONTEXT = (Task("semantic", 60),)
_NYUD = (Task("semantic", 40),)
_SIFT_FLOW = (Task("semantic", 33, "_sem"), Task("geometric", 3, "_geo"))


def _family(dataset: str, title: str, tasks: Tuple[Task, ...], prototxt: str) -> Tuple[ModelLayout, ...]:
    """FCN-32s, 16s and 8s of one dataset's release folders ("{dataset}-fcn8s")."""
    return tuple(
        ModelLayout(f"{dataset}-{variant}", f"{name} {title}", heads, tasks=tasks, dataset=dataset,
                    prototxt=f"{dataset}-{variant}/{prototxt}")
        for variant, name, heads in _VARIANTS
    )


#: Every model, by registry name, in the order the CLI lists them.
LAYOUTS: Dict[str, ModelLayout] = {
    layout.name: _check(layout)
    for layout in (
        *(ModelLayout(f"voc-{variant}", name, heads, prototxt=f"voc-{variant}/val.prototxt", aliases=(variant,))
          for variant, name, heads in _VARIANTS),
        ModelLayout("voc-fcn8s-atonce", "FCN-8s at-once", _FCN8S_HEADS, AT_ONCE_SCALES,
                    prototxt="voc-fcn8s-atonce/val.prototxt", aliases=("fcn8s-atonce",)),
        *_family("pascalcontext", "PASCAL-Context", _PASCAL_CONTEXT, "val.prototxt"),
        ModelLayout("nyud-fcn32s-color", "FCN-32s NYUDv2 RGB", _FCN32S_HEADS, tasks=_NYUD, dataset="nyud",
                    prototxt="nyud-fcn32s-color/test.prototxt"),
        ModelLayout("nyud-fcn32s-hha", "FCN-32s NYUDv2 HHA", _FCN32S_HEADS, tasks=_NYUD,
                    streams=(Stream(("hha",)),), dataset="nyud", prototxt="nyud-fcn32s-hha/test.prototxt"),
        ModelLayout("nyud-fcn32s-color-d", "FCN-32s NYUDv2 RGB-D (early fusion)", _FCN32S_HEADS, tasks=_NYUD,
                    streams=(Stream(("color", "depth"), first_conv="conv1_1_bgrd"),), dataset="nyud",
                    prototxt="nyud-fcn32s-color-d/test.prototxt"),
        ModelLayout("nyud-fcn32s-color-hha", "FCN-32s NYUDv2 RGB-HHA (late fusion)", _FCN32S_HEADS, tasks=_NYUD,
                    streams=(Stream(("color",), "color", weight=0.5), Stream(("hha",), "hha", weight=0.5)),
                    dataset="nyud", prototxt="nyud-fcn32s-color-hha/test.prototxt"),
        *_family("siftflow", "SIFT Flow", _SIFT_FLOW, "test.prototxt"),
    )
}


def at_once_pair(layout: ModelLayout) -> Optional[Tuple[ModelLayout, ModelLayout]]:
    """(plain, at-once) layouts with ``layout``'s heads, tasks and streams, or None when it has no
    at-once variant."""
    twins = [other for other in LAYOUTS.values()
             if (other.heads, other.tasks, other.streams) == (layout.heads, layout.tasks, layout.streams)]
    plain = [t for t in twins if not t.at_once]
    scaled = [t for t in twins if t.at_once]
    return (plain[0], scaled[0]) if plain and scaled else None


__all__ = [
    "VGG16_BLOCKS", "CONV_NAMES", "FIRST_CONV", "CONV_KERNEL", "CONV_PADDING", "FIRST_CONV_PADDING", "POOL_KERNEL",
    "POOL_STRIDE", "FC_CHANNELS", "FC6_KERNEL", "DROPOUT", "FC_NAMES", "FINAL_SCORE", "BACKBONE_CONVS",
    "SCALED_POOLS", "AT_ONCE_SCALES", "SCALE_LAYER", "MODALITY_CHANNELS", "pool_scale_attr", "pool_channels",
    "HeadStage", "Stream", "Task", "ModelLayout", "LAYOUTS", "at_once_pair",
]
