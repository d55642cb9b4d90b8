"""Launchers of the C++ CPU kernels in ``fcnfast._C`` (fp32 and fp64, OpenMP)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..geometry import Geometry
from . import _abi, _extensions

DTYPES = (torch.float32, torch.float64)


def _module():
    module, reason = _extensions.load("_C")
    if module is None:
        raise RuntimeError(f"backend 'cpp' is unavailable: {reason}")
    return module


def _check(t: torch.Tensor, name: str) -> None:
    if t.device.type != "cpu":
        raise ValueError(f"backend 'cpp' needs CPU tensors, {name} is on {t.device}")
    if t.dtype not in DTYPES:
        raise TypeError(f"backend 'cpp' supports float32 and float64, {name} has dtype {t.dtype}")


def upsample_crop_add_cpp(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    skip: Optional[torch.Tensor],
    geom: Geometry,
    depthwise: bool,
) -> torch.Tensor:
    """Fused forward on the CPU; ``geom`` comes from ``resolve_geometry`` of these tensors."""
    _check(x, "x")
    out, call = _abi.forward_call(geom, x, weight, bias, skip, depthwise)
    if call is not None:
        _module().upsample_crop_add_fwd(*call[0], torch.get_num_threads())
    return out


def upsample_crop_add_backward_cpp(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    geom: Geometry,
    depthwise: bool,
    need_input: bool,
    need_weight: bool,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(grad_x, grad_weight) of the fused op; None for a gradient that is not needed."""
    _check(x, "x")
    grad_out = _abi.checked_grad_out(geom, grad_out, x, weight)
    module = _module()
    code = _abi.DTYPE_CODES[x.dtype]
    threads = torch.get_num_threads()
    grad_x = grad_w = None
    if need_input:
        grad_x = torch.empty((geom.N, geom.Cin, geom.Hin, geom.Win), dtype=x.dtype)
        if grad_x.numel():
            module.upsample_crop_add_bwd_input(
                _abi.geometry_list(geom), code, grad_out.data_ptr(), weight.contiguous().data_ptr(),
                grad_x.data_ptr(), bool(depthwise), threads,
            )
    if need_weight:
        grad_w = torch.empty(weight.shape, dtype=x.dtype)
        if geom.N == 0:
            grad_w.zero_()
        else:
            module.upsample_crop_add_bwd_weight(
                _abi.geometry_list(geom), code, x.data_ptr(), _abi.strides(x),
                grad_out.data_ptr(), grad_w.data_ptr(), threads,
            )
    return grad_x, grad_w
