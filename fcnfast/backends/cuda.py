"""Launchers of the CUDA C++ kernels in ``fcnfast._cuda`` (fp32, fp16, bf16; fp32 accumulation).

Kernels run on PyTorch's current stream of the tensors' device; the stream handle is
passed as an integer because ``fcnfast._cuda`` does not link libtorch.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..geometry import Geometry
from . import _abi, _extensions, _sync_check

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _module():
    module, reason = _extensions.load("_cuda")
    if module is None:
        raise RuntimeError(f"backend 'cuda' is unavailable: {reason}")
    return module


def _check(t: torch.Tensor, name: str) -> None:
    if t.device.type != "cuda":
        raise ValueError(f"backend 'cuda' needs CUDA tensors, {name} is on {t.device}")
    if t.dtype not in DTYPES:
        raise TypeError(f"backend 'cuda' supports float32, float16 and bfloat16, {name} has dtype {t.dtype}")


def upsample_crop_add_cuda(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    skip: Optional[torch.Tensor],
    geom: Geometry,
    depthwise: bool,
) -> torch.Tensor:
    """Fused forward on a CUDA device; ``geom`` comes from ``resolve_geometry`` of these tensors."""
    _check(x, "x")
    out, call = _abi.forward_call(geom, x, weight, bias, skip, depthwise)
    if call is not None:
        args, _keep_alive = call  # the contiguous weight/bias copies stay referenced through the launch
        with torch.cuda.device(x.device):
            _module().upsample_crop_add_fwd(*args, torch.cuda.current_stream(x.device).cuda_stream)
        _sync_check.after_launch("upsample_crop_add_fwd (CUDA C++)", x.device)
    return out


def upsample_crop_add_backward_cuda(
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
    # Referenced until this function returns, i.e. past the asynchronous kernel's enqueue; the
    # caching allocator then reuses its memory only in stream order, after that kernel.
    weight_c = weight.contiguous()
    grad_x = grad_w = None
    with torch.cuda.device(x.device):
        stream = torch.cuda.current_stream(x.device).cuda_stream
        if need_input:
            grad_x = torch.empty((geom.N, geom.Cin, geom.Hin, geom.Win), dtype=x.dtype, device=x.device)
            if grad_x.numel():
                module.upsample_crop_add_bwd_input(
                    _abi.geometry_list(geom), code, grad_out.data_ptr(),
                    weight_c.data_ptr(), grad_x.data_ptr(), bool(depthwise), stream,
                )
                _sync_check.after_launch("upsample_crop_add_bwd_input (CUDA C++)", x.device)
        if need_weight:
            # fp16/bf16 gradients are reduced into an fp32 buffer, then rounded once.
            acc_dtype = x.dtype if x.dtype == torch.float32 else torch.float32
            grad_w = torch.zeros(weight.shape, dtype=acc_dtype, device=x.device)
            if geom.N:
                module.upsample_crop_add_bwd_weight(
                    _abi.geometry_list(geom), code, x.data_ptr(), _abi.strides(x),
                    grad_out.data_ptr(), grad_w.data_ptr(), stream,
                )
                _sync_check.after_launch("upsample_crop_add_bwd_weight (CUDA C++)", x.device)
            grad_w = grad_w.to(weight.dtype)
    return grad_x, grad_w
