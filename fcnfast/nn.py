"""Modules built on the fused op. ``UpsampleCropAdd`` replaces FCN's ConvTranspose2d + crop + sum."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .backends import check_backend_name
from .geometry import IntPair, pair
from .ops import is_channel_diagonal, upsample_crop_add
from .reference import bilinear_weight, plain_window


class UpsampleCropAdd(nn.Module):
    """One FCN head stage: ``conv_transpose2d(x)[window] + skip[skip window]`` in one fused op.

    Holds ``weight`` (Cin, Cout, k, k) in the nn.ConvTranspose2d layout, so state dicts of
    Caffe/pytorch-fcn upscore layers load unchanged. The window starts at ``offset`` and is
    ``size`` large (a forward argument: FCN's final crop depends on the input size); the skip
    is read from ``skip_offset``. Initialised to bilinear filters on the channel diagonal.

    Args:
        depthwise: None detects diagonal (bilinear) weights, cached per weight version;
            True requires them; False forces the dense path. ``repr`` shows the choice.
        backend: None (auto) or a backend name; see :func:`fcnfast.upsample_crop_add`.
        learnable: whether the weight requires grad (FCN freezes its bilinear filters).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: IntPair,
        *,
        offset: IntPair = 0,
        skip_offset: IntPair = 0,
        bias: bool = False,
        depthwise: Optional[bool] = None,
        backend: Optional[str] = None,
        learnable: bool = False,
    ) -> None:
        super().__init__()
        check_backend_name(backend)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride = pair(stride, "stride")
        self.offset = pair(offset, "offset")
        self.skip_offset = pair(skip_offset, "skip_offset")
        self.depthwise = depthwise
        self.backend = backend
        self.weight = nn.Parameter(bilinear_weight(in_channels, out_channels, kernel_size), requires_grad=learnable)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def reset_bilinear(self) -> None:
        """Rewrite the weight with bilinear filters on the channel diagonal (zeros elsewhere)."""
        with torch.no_grad():
            self.weight.copy_(bilinear_weight(self.in_channels, self.out_channels, self.kernel_size))

    def forward(self, x: Tensor, skip: Optional[Tensor] = None, size: Optional[IntPair] = None) -> Tensor:
        return upsample_crop_add(
            x, self.weight, self.stride, offset=self.offset, size=size, skip=skip,
            skip_offset=self.skip_offset, bias=self.bias, depthwise=self.depthwise, backend=self.backend,
        )

    def forward_plain(self, x: Tensor, skip: Optional[Tensor] = None, size: Optional[IntPair] = None) -> Tensor:
        """``forward`` as standard tensor ops (ConvTranspose, Slice, Add; :func:`fcnfast.reference.plain_window`):
        what ONNX export traces. Unvalidated, and symbolic sizes stay symbolic."""
        return plain_window(x, self.weight, self.bias, skip, self.stride, self.offset,
                            None if size is None else pair(size, "size"), self.skip_offset)

    def depthwise_choice(self) -> str:
        """"depthwise" or "dense": the path the next forward takes (detected when depthwise=None)."""
        if self.depthwise is not None:
            return "depthwise" if self.depthwise else "dense"
        if self.weight.is_meta:
            return "auto"
        return "depthwise" if is_channel_diagonal(self.weight) else "dense"

    def extra_repr(self) -> str:
        mode = self.depthwise_choice()
        if self.depthwise is None:
            mode = f"auto->{mode}"
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"offset={self.offset}, skip_offset={self.skip_offset}, bias={self.bias is not None}, "
            f"depthwise={mode}, backend={self.backend or 'auto'}"
        )
