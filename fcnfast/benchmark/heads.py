"""The head stages measured on their own: their inputs captured from one forward, chained again,
as the plain PyTorch graph (what torch.compile sees), and their shapes at a given input size."""

from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..models import DEFAULT_MODEL, build_model
from ..nn import UpsampleCropAdd
from ..reference import upsample_crop_add_reference


class HeadInputs:
    """The tensors the head stages of one forward consumed: the first stage's x, each stage's skip and size."""

    def __init__(self, first_x: Tensor, skips: List[Optional[Tensor]], sizes: List[Optional[Tuple[int, int]]]):
        self.first_x, self.skips, self.sizes = first_x, skips, sizes

    def to(self, dtype: torch.dtype, channels_last: bool = False) -> "HeadInputs":
        """Contiguous copies in ``dtype`` (channels_last when asked: what optimize()'s heads expect)."""

        def conv(t):
            if t is None:
                return None
            t = t.to(dtype)
            return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()

        return HeadInputs(conv(self.first_x), [conv(s) for s in self.skips], list(self.sizes))


def capture_head_inputs(model: nn.Module) -> Tuple[Callable[[], Optional[HeadInputs]], Callable[[], None]]:
    """Forward pre-hooks on the model's head stages; returns (get, remove)."""
    heads = model.heads()
    calls: Dict[int, tuple] = {}
    handles = []
    for i, head in enumerate(heads):
        def hook(module, args, kwargs, i=i):
            if i not in calls:
                x = args[0]
                skip = kwargs.get("skip", args[1] if len(args) > 1 else None)
                size = kwargs.get("size", args[2] if len(args) > 2 else None)
                calls[i] = (x, skip, None if size is None else tuple(int(v) for v in size))
        handles.append(head.register_forward_pre_hook(hook, with_kwargs=True))

    def get() -> Optional[HeadInputs]:
        if len(calls) != len(heads):
            return None
        return HeadInputs(calls[0][0], [calls[i][1] for i in range(len(heads))], [calls[i][2] for i in range(len(heads))])

    def remove() -> None:
        for h in handles:
            h.remove()

    return get, remove


def run_heads(heads: Sequence[nn.Module], inputs: HeadInputs) -> Tensor:
    """The head stages chained as in the model: each stage's output feeds the next."""
    out = inputs.first_x
    for head, skip, size in zip(heads, inputs.skips, inputs.sizes):
        out = head(out, skip=skip, size=size)
    return out


class PlainHead(nn.Module):
    """A head stage as the plain PyTorch graph (``fcnfast.reference``), visible to torch.compile."""

    def __init__(self, head: UpsampleCropAdd):
        super().__init__()
        self.head = head

    def forward(self, x: Tensor, skip: Optional[Tensor] = None, size=None) -> Tensor:
        h = self.head
        return upsample_crop_add_reference(x, h.weight, h.stride, offset=h.offset, size=size, skip=skip,
                                           skip_offset=h.skip_offset, bias=h.bias)


def plain_reference_model(model: nn.Module) -> nn.Module:
    """A shallow copy of ``model`` (parameters shared) whose heads are :class:`PlainHead` s."""
    plain = copy.copy(model)
    plain._modules = dict(model._modules)
    for name in model.head_names:
        plain._modules[name] = PlainHead(getattr(model, name))
    return plain


def head_stage_shapes(model: str = DEFAULT_MODEL, size: Tuple[int, int] = (500, 500), batch: int = 1,
                      num_classes: int = 21) -> List[dict]:
    """Per head stage of ``model`` at input ``size``: its geometry and input shapes (exact, via meta tensors)."""
    with torch.device("meta"):
        net = build_model(model, num_classes=num_classes)
    get, remove = capture_head_inputs(net)
    shapes = []
    outs: Dict[str, tuple] = {}
    hooks = [getattr(net, n).register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, tuple(o.shape)))
             for n in net.head_names]
    try:
        net(torch.empty(batch, 3, *size, device="meta"))
    finally:
        remove()
        for h in hooks:
            h.remove()
    inputs = get()
    x_shape = tuple(inputs.first_x.shape)
    for i, name in enumerate(net.head_names):
        head = getattr(net, name)
        skip = inputs.skips[i]
        shapes.append(dict(
            name=name, x_shape=x_shape, skip_shape=None if skip is None else tuple(skip.shape),
            out_shape=outs[name], kernel=head.kernel_size, stride=head.stride, offset=head.offset,
            skip_offset=head.skip_offset, size=inputs.sizes[i],
        ))
        x_shape = outs[name]
    return shapes
