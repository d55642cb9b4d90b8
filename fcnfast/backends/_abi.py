"""What the pybind11 modules expect from Python: dtype codes, pointers, strides, geometry."""

from __future__ import annotations

from typing import List, Optional

import torch

from ..geometry import Geometry

# Mirrors enum DType in csrc/include/fcnfast/index_math.h.
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
NO_STRIDES = [0, 0, 0, 0]


def ptr(t: Optional[torch.Tensor]) -> int:
    return 0 if t is None else t.data_ptr()


def strides(t: Optional[torch.Tensor]) -> List[int]:
    return NO_STRIDES if t is None else list(t.stride())


def geometry_list(g: Geometry) -> List[int]:
    return [int(v) for v in g]


def check_layout(
    g: Geometry,
    x: torch.Tensor,
    skip: Optional[torch.Tensor],
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
) -> None:
    """Last line of defence before raw pointers leave Python: shapes and dtypes must match the geometry."""
    if tuple(x.shape) != (g.N, g.Cin, g.Hin, g.Win):
        raise ValueError(f"x shape {tuple(x.shape)} does not match geometry {g}")
    if weight is not None and tuple(weight.shape) != (g.Cin, g.Cout, g.kh, g.kw):
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match geometry {g}")
    if bias is not None and tuple(bias.shape) != (g.Cout,):
        raise ValueError(f"bias shape {tuple(bias.shape)} does not match geometry {g}")
    for name, t in (("weight", weight), ("bias", bias), ("skip", skip)):
        if t is not None and (t.dtype != x.dtype or t.device != x.device):
            raise TypeError(f"{name} is {t.dtype} on {t.device}, x is {x.dtype} on {x.device}")
    if skip is not None:
        if skip.shape[0] != g.N or skip.shape[1] != g.Cout or skip.shape[2] < g.sy + g.H or skip.shape[3] < g.sx + g.W:
            raise ValueError(f"skip shape {tuple(skip.shape)} does not cover the window of {g}")


def forward_call(g: Geometry, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                 skip: Optional[torch.Tensor], depthwise: bool):
    """(out, args) for ``upsample_crop_add_fwd`` of either compiled module: checks the layout,
    allocates the contiguous output and lists every argument but the last (threads or stream).
    ``args`` is None when the output is empty and nothing is to be launched."""
    check_layout(g, x, skip, weight, bias)
    weight = weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    out = torch.empty((g.N, g.Cout, g.H, g.W), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out, None
    args = [geometry_list(g), DTYPE_CODES[x.dtype], x.data_ptr(), strides(x), weight.data_ptr(), ptr(bias),
            ptr(skip), strides(skip), out.data_ptr(), bool(depthwise)]
    # the tensors behind the pointers must outlive the launch: keep them referenced
    return out, (args, (weight, bias))


def checked_grad_out(g: Geometry, grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """grad_out made contiguous after checking it (and x, weight) against the geometry."""
    check_layout(g, x, None, weight)
    if grad_out.dtype != x.dtype or grad_out.device != x.device:
        raise TypeError(f"grad_out is {grad_out.dtype} on {grad_out.device}, x is {x.dtype} on {x.device}")
    grad_out = grad_out.contiguous()
    if tuple(grad_out.shape) != (g.N, g.Cout, g.H, g.W):
        raise ValueError(f"grad_out shape {tuple(grad_out.shape)} does not match {g}")
    return grad_out
