"""The reference backend: plain PyTorch ops behind the launcher signature of the fused ones."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ..geometry import Geometry


def upsample_crop_add_reference_launch(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    skip: Optional[torch.Tensor],
    geom: Geometry,
    depthwise: bool,
) -> torch.Tensor:
    """conv_transpose2d over the whole input, then crop and add (``depthwise`` changes nothing)."""
    full = F.conv_transpose2d(x, weight, bias, stride=(geom.sh, geom.sw))
    out = full[:, :, geom.oy : geom.oy + geom.H, geom.ox : geom.ox + geom.W]
    if skip is not None:
        out = out + skip[:, :, geom.sy : geom.sy + geom.H, geom.sx : geom.sx + geom.W]
    return out.contiguous()


def upsample_crop_add_backward_reference(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    geom: Geometry,
    depthwise: bool,
    need_input: bool,
    need_weight: bool,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients through ATen's own transposed-convolution backward of the padded grad_out."""
    full_h, full_w = geom.full_size
    grad_full = F.pad(grad_out, (geom.ox, full_w - geom.ox - geom.W, geom.oy, full_h - geom.oy - geom.H))
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        grad_full, x, weight, None, [geom.sh, geom.sw], [0, 0], [1, 1], True, [0, 0], 1,
        [need_input, need_weight, False],
    )
    return (grad_x if need_input else None), (grad_w if need_weight else None)
