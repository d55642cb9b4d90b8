"""The networks of the FCN reference release with the exact Caffe geometry (docs/design.md §6),
built from :mod:`fcnfast.models.layout`: one class per layout.

Layer names are Caffe's (and pytorch-fcn's), so their state dicts and converted caffemodels load
with ``strict=True``. The heads are :class:`fcnfast.nn.UpsampleCropAdd` stages: one fused op per
upsampling stage; ``backend="reference"`` reproduces the plain PyTorch graph exactly.
"""

from __future__ import annotations

from typing import ClassVar, Dict, List, Optional, Sequence, Tuple, Type, Union

from torch import Tensor, nn

from ..backends import check_backend_name
from ..nn import UpsampleCropAdd
from .layout import (
    CONV_KERNEL, CONV_PADDING, DROPOUT, FC6_KERNEL, FC_CHANNELS, FC_NAMES, FIRST_CONV_PADDING, LAYOUTS,
    POOL_KERNEL, POOL_STRIDE, SCALED_POOLS, VGG16_BLOCKS, ModelLayout, Stream, Task, pool_channels, pool_scale_attr,
)
from .weights import unwrap_state_dict

__all__ = ["FCN", "FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "LAYOUT_CLASSES", "ClassCounts"]

#: ``num_classes`` as models take it: an int for one output, one int per output for several.
ClassCounts = Union[int, Sequence[int]]


def _task_classes(layout: ModelLayout, num_classes: Optional[ClassCounts]) -> Tuple[int, ...]:
    if num_classes is None:
        return tuple(task.num_classes for task in layout.tasks)
    counts = (num_classes,) if isinstance(num_classes, int) else tuple(num_classes)
    if len(counts) != len(layout.tasks) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
        want = "a positive int" if len(layout.tasks) == 1 else (
            f"{len(layout.tasks)} positive ints ({', '.join(t.label for t in layout.tasks)})")
        raise ValueError(f"num_classes of {layout.name} must be {want}, got {num_classes!r}")
    return counts


class FCN(nn.Module):
    """A VGG16 FCN in Caffe's form: conv1_1 pads by 100, ceil-mode pools, fc6/fc7 as convs.

    Each subclass names its :class:`~fcnfast.models.layout.ModelLayout` (``class FCN8s(FCN,
    layout="voc-fcn8s")``), from which the trunks, score layers, head stages and forward are built.
    ``num_classes`` defaults to the release's (an int, or one per output for several outputs).
    Initialisation follows the paper: score layers start at zero and upsampling layers are frozen
    bilinear filters; the trunks keep PyTorch's default init until
    :func:`fcnfast.models.vgg16_init` transplants VGG16 weights.

    ``forward`` takes one preprocessed (N, C, H, W) batch per stream (``layout.input_channels``)
    and returns the full-size scores: one (N, classes, H, W) tensor, or a tuple with one per task
    (``layout.labels`` order) for several outputs.
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

    def __init__(self, num_classes: Optional[ClassCounts] = None, backend: Optional[str] = None) -> None:
        super().__init__()
        if getattr(type(self), "layout", None) is None:
            raise TypeError("FCN is built through a subclass naming its layout; use fcnfast.build_model(name)")
        check_backend_name(backend)
        layout = self.layout
        self.task_classes = _task_classes(layout, num_classes)
        self.num_classes: ClassCounts = self.task_classes[0] if len(self.task_classes) == 1 else self.task_classes
        # Registration order is the state dict's order and the order random_init_ draws in.
        for stream in layout.streams:
            self._add_trunk(stream)
        for task, classes in zip(layout.tasks, self.task_classes):
            for stream in layout.streams:
                setattr(self, layout.score_name(task, stream), nn.Conv2d(FC_CHANNELS, classes, 1))
            for stage in layout.skip_stages:
                setattr(self, layout.skip_score_name(stage, task), nn.Conv2d(pool_channels(stage.skip_pool), classes, 1))
            for stage in layout.heads:
                head = UpsampleCropAdd(classes, classes, stage.kernel, stage.stride, offset=stage.offset,
                                       skip_offset=stage.skip_offset, backend=backend)
                setattr(self, layout.head_name(stage, task), head)
        self._zero_scores()

    def _add_trunk(self, stream: Stream) -> None:
        for block, (cin, cout, n) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, n + 1):
                first = (block, i) == (1, 1)
                conv = nn.Conv2d(stream.channels if first else (cin if i == 1 else cout), cout, CONV_KERNEL,
                                 padding=FIRST_CONV_PADDING if first else CONV_PADDING)
                setattr(self, stream.layer(f"conv{block}_{i}"), conv)
                setattr(self, stream.layer(f"relu{block}_{i}"), nn.ReLU(inplace=True))
            setattr(self, stream.layer(f"pool{block}"), nn.MaxPool2d(POOL_KERNEL, stride=POOL_STRIDE, ceil_mode=True))
        fc6, fc7 = FC_NAMES
        setattr(self, stream.layer(fc6), nn.Conv2d(VGG16_BLOCKS[-1][1], FC_CHANNELS, FC6_KERNEL))
        setattr(self, stream.layer("relu6"), nn.ReLU(inplace=True))
        setattr(self, stream.layer("drop6"), nn.Dropout(DROPOUT))
        setattr(self, stream.layer(fc7), nn.Conv2d(FC_CHANNELS, FC_CHANNELS, 1))
        setattr(self, stream.layer("relu7"), nn.ReLU(inplace=True))
        setattr(self, stream.layer("drop7"), nn.Dropout(DROPOUT))

    def _zero_scores(self) -> None:
        for name in self.layout.score_layers:
            module = getattr(self, name)
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def _trunk(self, stream: Stream, x: Tensor) -> Tuple[Dict[int, Tensor], Tensor]:
        """({block: pool{block}}, drop7) of one stream's input."""
        h = x
        taps: Dict[int, Tensor] = {}
        for block, (_, _, n) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, n + 1):
                h = getattr(self, stream.layer(f"relu{block}_{i}"))(getattr(self, stream.layer(f"conv{block}_{i}"))(h))
            h = getattr(self, stream.layer(f"pool{block}"))(h)
            taps[block] = h
        for fc in ("6", "7"):
            h = getattr(self, stream.layer(f"fc{fc}"))(h)
            h = getattr(self, stream.layer(f"drop{fc}"))(getattr(self, stream.layer(f"relu{fc}"))(h))
        return taps, h

    def _check_inputs(self, inputs: Tuple[Tensor, ...]) -> None:
        layout = self.layout
        if len(inputs) != len(layout.streams):
            names = " and ".join("+".join(s.modalities) for s in layout.streams)
            raise TypeError(f"{layout.name} takes {len(layout.streams)} input(s) ({names}), got {len(inputs)}")
        for x, stream in zip(inputs, layout.streams):
            if x.dim() != 4 or x.shape[1] != stream.channels:
                raise ValueError(
                    f"{layout.name} expects a (N, {stream.channels}, H, W) {'+'.join(stream.modalities)} batch, "
                    f"got shape {tuple(x.shape)}"
                )
        first = inputs[0]  # compared with ==, not hashed: shapes may be symbolic under torch.compile/export
        if any(x.shape[0] != first.shape[0] or x.shape[2:] != first.shape[2:] for x in inputs[1:]):
            raise ValueError(f"{layout.name}: the inputs differ in batch or size: {[tuple(x.shape) for x in inputs]}")

    def forward(self, *inputs: Tensor) -> Union[Tensor, Tuple[Tensor, ...]]:
        """Scores of the preprocessed inputs (see the class docstring): each task's score_fr (the
        streams' summed with their weights), then each head stage in layout order (adding its
        scaled, scored pool skip), the last one cropped to (H, W)."""
        self._check_inputs(inputs)
        trunks = [self._trunk(stream, x) for stream, x in zip(self.layout.streams, inputs)]
        return self.score_and_upsample(inputs[0].shape[2:], trunks)

    def score_and_upsample(self, size, trunks: Sequence[Tuple[Dict[int, Tensor], Tensor]]
                           ) -> Union[Tensor, Tuple[Tensor, ...]]:
        """The forward after the trunks, for inputs of size (H, W): ``trunks`` holds one
        ``({block: pool{block}}, drop7)`` per stream, as ``_trunk`` returns them (pools 3 and 4
        are the ones read). Another trunk (optimize()'s CPU route) feeds the same heads here."""
        outputs = [self._task_forward(task, trunks, size) for task in self.layout.tasks]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _task_forward(self, task: Task, trunks: Sequence[Tuple[Dict[int, Tensor], Tensor]], size) -> Tensor:
        layout = self.layout
        h = None
        for stream, (_, drop7) in zip(layout.streams, trunks):
            score = getattr(self, layout.score_name(task, stream))(drop7)
            score = score if stream.weight == 1.0 else score * stream.weight
            h = score if h is None else h + score
        pools = trunks[0][0]  # skips exist only with one stream (layout._check)
        last = len(layout.heads) - 1
        for i, stage in enumerate(layout.heads):
            skip = None
            if stage.skip_pool is not None:
                tap = pools[stage.skip_pool]
                scale = getattr(self, pool_scale_attr(stage.skip_pool))
                if scale != 1.0:
                    tap = tap * scale
                skip = getattr(self, layout.skip_score_name(stage, task))(tap)
            h = getattr(self, layout.head_name(stage, task))(h, skip=skip, size=size if i == last else None)
        return h

    def split_input(self, x: Tensor) -> Tuple[Tensor, ...]:
        """The forward arguments in one (N, sum of input channels, H, W) batch, as datasets deliver
        them: its channels split stream by stream (a one-stream model gets ``(x,)``)."""
        widths = self.layout.input_channels
        if x.dim() != 4 or x.shape[1] != sum(widths):
            raise ValueError(f"{self.layout.name} expects a (N, {sum(widths)}, H, W) batch "
                             f"({' + '.join(self.layout.modalities)}), got shape {tuple(x.shape)}")
        return (x,) if len(widths) == 1 else tuple(x.split(list(widths), dim=1))

    def heads(self) -> List[UpsampleCropAdd]:
        return [getattr(self, name) for name in self.head_names]

    def set_backend(self, backend: Optional[str]) -> "FCN":
        """Run every head stage on ``backend`` (None = auto). Returns self."""
        check_backend_name(backend)
        for head in self.heads():
            head.backend = backend
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` that also takes a checkpoint dict holding ``model_state_dict``
        (pytorch-fcn's format) and strips a DataParallel/DDP ``module.`` prefix."""
        return super().load_state_dict(unwrap_state_dict(state_dict), strict=strict, assign=assign)


# The VOC networks keep the class names pytorch-fcn gave them (checkpoints name them as ``arch``).
class FCN32s(FCN, layout="voc-fcn32s"):
    """FCN-32s: score_fr upsampled 32x by ``upscore`` (k64 s32), window at 19."""


class FCN16s(FCN, layout="voc-fcn16s"):
    """FCN-16s: upscore2 (k4 s2) + score_pool4 cropped at 5, then upscore16 (k32 s16) at 27."""


class FCN8s(FCN, layout="voc-fcn8s"):
    """FCN-8s: as 16s to fuse_pool4, upscore_pool4 (k4 s2) + score_pool3 cropped at 9,
    then upscore8 (k16 s8) with its window at 31."""


class FCN8sAtOnce(FCN8s, layout="voc-fcn8s-atonce"):
    """FCN-8s trained at once: pool4 scaled by 0.01 and pool3 by 0.0001 before their score convs.

    ``fcnfast.optimize`` folds the scales into the score weights for inference.
    """


# Name parts spelled as the paper does; other parts are capitalised.
_NAME_PARTS = {"voc": "", "pascalcontext": "PascalContext", "siftflow": "SiftFlow", "nyud": "NYUD", "hha": "HHA",
               "atonce": "AtOnce"}


def class_name(layout_name: str) -> str:
    """The class name of a layout: "pascalcontext-fcn8s" -> "PascalContextFCN8s" ("voc-fcn8s" -> "FCN8s")."""
    return "".join(_NAME_PARTS.get(part, "FCN" + part[3:] if part.startswith("fcn") else part.capitalize())
                   for part in layout_name.split("-"))


def _layout_class(layout: ModelLayout) -> Type[FCN]:
    streams = " + ".join("+".join(s.modalities) for s in layout.streams)
    outputs = ", ".join(f"{t.label} ({t.num_classes} classes)" for t in layout.tasks)
    doc = f"{layout.title} of the release folder {layout.name}: input {streams}; output {outputs}."
    cls = type(class_name(layout.name), (FCN,), {"__module__": __name__, "__doc__": doc}, layout=layout.name)
    globals()[cls.__name__] = cls  # importable and picklable as fcnfast.models.fcn.<name>
    return cls


_NAMED = {cls.layout.name: cls for cls in (FCN32s, FCN16s, FCN8s, FCN8sAtOnce)}
#: The class of every layout, in :data:`LAYOUTS` order.
LAYOUT_CLASSES: Dict[str, Type[FCN]] = {
    name: _NAMED.get(name) or _layout_class(layout) for name, layout in LAYOUTS.items()
}
__all__ += [cls.__name__ for name, cls in LAYOUT_CLASSES.items() if name not in _NAMED]

