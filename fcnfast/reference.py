"""Pure-PyTorch references: the judges every fused kernel is tested and benchmarked against.

Tests and benchmarks import their baselines from here and never re-implement them.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .geometry import Geometry, IntPair, resolve_geometry


def upsample_crop_add_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: IntPair,
    *,
    offset: IntPair = 0,
    size: Optional[IntPair] = None,
    skip: Optional[torch.Tensor] = None,
    skip_offset: IntPair = 0,
    bias: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``conv_transpose2d(x, weight, bias, stride)[:, :, oy:oy+H, ox:ox+W] + skip[:, :, sy:sy+H, sx:sx+W]``.

    Materialises the full transposed-conv output, then slices: the plain PyTorch graph
    FCN has always used. Returns a contiguous (N, Cout, H, W) tensor.
    """
    geom = resolve_geometry(x, weight, bias, skip, stride, offset, size, skip_offset)
    return reference_window(x, weight, bias, skip, geom)


def reference_window(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                     skip: Optional[torch.Tensor], geom: Geometry) -> torch.Tensor:
    """:func:`upsample_crop_add_reference` for tensors already validated against ``geom``."""
    return plain_window(x, weight, bias, skip, (geom.sh, geom.sw), (geom.oy, geom.ox), (geom.H, geom.W),
                        (geom.sy, geom.sx)).contiguous()


def plain_window(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], skip: Optional[torch.Tensor],
                 stride: Tuple, offset: Tuple, size: Optional[Tuple], skip_offset: Tuple) -> torch.Tensor:
    """The op as standard tensor ops (ConvTranspose, Slice, Add), without validation, in any layout.

    Every pair is (h, w) and may hold symbolic sizes (``torch.export``, ONNX export): nothing
    here turns a size into a Python int. ``size`` None is the full output minus ``offset``.
    """
    full = F.conv_transpose2d(x, weight, bias, stride=tuple(stride))
    (oy, ox), (sy, sx) = offset, skip_offset
    H, W = (full.shape[2] - oy, full.shape[3] - ox) if size is None else size
    out = full[:, :, oy : oy + H, ox : ox + W]
    if skip is not None:
        out = out + skip[:, :, sy : sy + H, sx : sx + W]
    return out


def bilinear_kernel(kernel_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (k, k) bilinear interpolation filter Caffe/FCN use for upsampling layers.

    factor = (k+1)//2; centre = factor-1 for odd k, factor-0.5 for even k;
    f(i, j) = (1 - |i-c|/factor) * (1 - |j-c|/factor).
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    return torch.outer(filt, filt).to(dtype)


def bilinear_weight(in_channels: int, out_channels: int, kernel_size: int,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(Cin, Cout, k, k) transposed-conv weight: the bilinear filter where in == out, else 0."""
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size, dtype=dtype)
    filt = bilinear_kernel(kernel_size, dtype)
    for c in range(min(in_channels, out_channels)):
        weight[c, c] = filt
    return weight
