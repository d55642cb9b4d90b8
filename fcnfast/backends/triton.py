"""Launchers of the Triton kernels in ``fcnfast.kernels.upsample_crop_add`` (fp32, fp16, bf16).

The kernels (and their autotune configurations) live in ``kernels/``; this module checks the
tensors against the geometry, allocates outputs, picks autotuned or fixed configurations and
launches. Kernels run on PyTorch's current stream of the tensors' device.

``FCNFAST_TRITON_AUTOTUNE``: ``1`` (the default on CUDA) runs ``triton.autotune`` over each
kernel's configurations once per autotune key; ``0`` launches every kernel with its fixed
configuration (tests, sanitizers, reproducible timing). The interpreter always uses the fixed one.
"""

from __future__ import annotations

import contextlib
import os
from typing import Optional, Tuple

import torch
import triton

from fcnfast.kernels import upsample_crop_add as K

from ..geometry import Geometry
from . import _sync_check

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
AUTOTUNE_ENV = "FCNFAST_TRITON_AUTOTUNE"
INTERPRETED = K.INTERPRETED
# Offsets switch to int64 when any tensor spans more elements than this (headroom below
# 2^31 so that the masked-off lanes' offsets cannot wrap either).
INT32_SAFE = 2**30
FIXED_NUM_WARPS = 4


def autotune_enabled() -> bool:
    """Whether launches go through ``triton.autotune`` (``FCNFAST_TRITON_AUTOTUNE``, default 1)."""
    value = os.environ.get(AUTOTUNE_ENV, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{AUTOTUNE_ENV} must be 0 or 1, got {value!r}")
    return value == "1" and not INTERPRETED


def tune_bucket(work: int) -> int:
    """The autotune key's size bucket: the bit length of the work size (a power-of-two band)."""
    return int(work).bit_length()


def _check_dtype(t: torch.Tensor, name: str) -> None:
    if t.dtype not in DTYPES:
        raise TypeError(f"backend 'triton' supports float32, float16 and bfloat16, {name} has dtype {t.dtype}")


def _check_device(t: torch.Tensor, name: str) -> None:
    if t.device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            f"backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors), {name} is on {t.device}"
        )


def _device_guard(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _extent(t: Optional[torch.Tensor]) -> int:
    """Elements spanned by a strided tensor (the largest offset + 1)."""
    if t is None or t.numel() == 0:
        return 0
    return 1 + sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()))


def _idx64(*extents: int) -> bool:
    return max(extents) >= INT32_SAFE


def _strides(t: Optional[torch.Tensor]):
    return (0, 0, 0, 0) if t is None else tuple(t.stride())


def _upcast(dtype: torch.dtype) -> bool:
    return INTERPRETED and dtype == torch.bfloat16


def _launch(kernel, grid, args, fixed, device: torch.device, **constexprs) -> None:
    """Launch ``kernel`` (autotuned, or bare with its ``fixed`` configuration), then the sync check."""
    tuned = isinstance(kernel, triton.runtime.Autotuner)
    if tuned and autotune_enabled():
        kernel[grid](*args, **constexprs)
    else:
        bare = kernel.fn if tuned else kernel  # the JITFunction under the Autotuner
        bare[grid](*args, **constexprs, **fixed, num_warps=FIXED_NUM_WARPS)
    _sync_check.after_launch(_name(kernel), device)


def _name(kernel) -> str:
    while hasattr(kernel, "fn"):  # Autotuner -> JITFunction -> the Python function
        kernel = kernel.fn
    return getattr(kernel, "__name__", repr(kernel))


def upsample_crop_add_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    skip: Optional[torch.Tensor],
    geom: Geometry,
    depthwise: bool,
) -> torch.Tensor:
    """Fused forward; ``geom`` comes from ``resolve_geometry`` of these tensors.

    Returns a contiguous (N, Cout, H, W) tensor in x.dtype (empty without a launch for N=0).
    ``depthwise`` promises Cin == Cout and a weight that is zero off the channel diagonal.
    """
    g = geom
    for name, t in (("x", x), ("weight", weight), ("bias", bias), ("skip", skip)):
        if t is not None:
            _check_dtype(t, name)
            _check_device(t, name)
    if tuple(x.shape) != (g.N, g.Cin, g.Hin, g.Win):
        raise ValueError(f"x shape {tuple(x.shape)} does not match geometry {g}")
    if tuple(weight.shape) != (g.Cin, g.Cout, g.kh, g.kw):
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match geometry {g}")
    if skip is not None and (
        skip.shape[0] != g.N or skip.shape[1] != g.Cout or skip.shape[2] < g.sy + g.H or skip.shape[3] < g.sx + g.W
    ):
        raise ValueError(f"skip shape {tuple(skip.shape)} does not cover the window of {g}")
    if depthwise and g.Cin != g.Cout:
        raise ValueError(f"depthwise needs Cin == Cout, got weight {tuple(weight.shape)}")
    out = torch.empty((g.N, g.Cout, g.H, g.W), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    weight = weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    idx64 = _idx64(_extent(x), _extent(skip), out.numel(), weight.numel())
    result = out
    if _upcast(x.dtype):  # interpreter only: its fp32 -> bf16 cast truncates, torch's rounds
        out = torch.empty(out.shape, dtype=torch.float32, device=x.device)
    # Unused pointers still need a valid tensor argument; HAS_* masks every access.
    b_arg = bias if bias is not None else out
    s_arg = skip if skip is not None else out
    common = (g.Hin, g.Win, g.kh, g.kw, g.H, g.W, g.sh, g.sw, g.oy, g.ox, g.sy, g.sx,
              *x.stride(), *_strides(skip))
    bucket = tune_bucket(g.N * g.H * g.W)
    with _device_guard(x):
        if depthwise:
            def grid(meta):
                return (g.N * g.Cout * triton.cdiv(g.H, meta["BLOCK_H"]) * triton.cdiv(g.W, meta["BLOCK_W"]),)

            _launch(K._upsample_crop_add_fwd_depthwise_kernel, grid,
                    (x, weight, b_arg, s_arg, out, g.Cout, *common, g.Cin, g.Cout, bucket), K._DW_FIXED, x.device,
                    HAS_BIAS=bias is not None, HAS_SKIP=skip is not None, IDX64=idx64)
        else:
            def grid(meta):
                tiles = (triton.cdiv(triton.cdiv(g.H, g.sh), meta["BLOCK_MY"])
                         * triton.cdiv(triton.cdiv(g.W, g.sw), meta["BLOCK_MX"]))
                return (g.N * tiles * g.sh * g.sw, triton.cdiv(g.Cout, meta["BLOCK_CO"]))

            _launch(K._upsample_crop_add_fwd_kernel, grid,
                    (x, weight, b_arg, s_arg, out, g.Cin, g.Cout, *common, bucket), K._FWD_FIXED, x.device,
                    HAS_BIAS=bias is not None, HAS_SKIP=skip is not None,
                    IS_FP32=x.dtype == torch.float32, UPCAST=_upcast(x.dtype), IDX64=idx64)
    if out is not result:
        result.copy_(out)
    return result


def _num_splits(total: int, programs: int, device: torch.device) -> Tuple[int, int]:
    """(n_split, chunk) for the grad_w reduction over ``total`` (n, i, j) positions."""
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        target = max(1, (4 * sms) // max(programs, 1))
    else:
        target = 2  # interpreter: exercise the split reduction, keep it cheap
    max_split = triton.cdiv(total, K._BWD_W_CHUNK)
    n_split = max(1, min(target, max_split))
    chunk = triton.cdiv(triton.cdiv(total, n_split), K._BWD_W_CHUNK) * K._BWD_W_CHUNK
    return triton.cdiv(total, chunk), chunk


def upsample_crop_add_backward_triton(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    geom: Geometry,
    depthwise: bool,
    need_input: bool,
    need_weight: bool,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(grad_x, grad_weight) of the fused op; None for a gradient that is not needed.

    grad_x: contiguous (N, Cin, Hin, Win) in x.dtype; grad_weight: weight's shape in
    weight.dtype, reduced in fp32 and always dense (every Cin x Cout pair, even when the
    forward ran depthwise). grad_out and x are read through their strides.
    """
    g = geom
    for name, t in (("grad_out", grad_out), ("x", x), ("weight", weight)):
        _check_dtype(t, name)
        _check_device(t, name)
    if tuple(x.shape) != (g.N, g.Cin, g.Hin, g.Win):
        raise ValueError(f"x shape {tuple(x.shape)} does not match geometry {g}")
    if tuple(weight.shape) != (g.Cin, g.Cout, g.kh, g.kw):
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match geometry {g}")
    if tuple(grad_out.shape) != (g.N, g.Cout, g.H, g.W):
        raise ValueError(f"grad_out shape {tuple(grad_out.shape)} does not match {g}")
    if depthwise and g.Cin != g.Cout:
        raise ValueError(f"depthwise needs Cin == Cout, got weight {tuple(weight.shape)}")
    if grad_out.dtype != x.dtype:
        grad_out = grad_out.to(x.dtype)
    weight = weight.contiguous()
    idx64 = _idx64(_extent(x), _extent(grad_out), g.N * g.Cin * g.Hin * g.Win, weight.numel())
    is_fp32 = x.dtype == torch.float32
    upcast = _upcast(x.dtype)
    bucket = tune_bucket(g.N * g.Hin * g.Win)
    grad_x = grad_w = None
    with _device_guard(x):
        if need_input:
            # interpreter + bf16: write fp32 and let torch round (the interpreter truncates)
            gx_dtype = torch.float32 if upcast else x.dtype
            grad_x = torch.empty((g.N, g.Cin, g.Hin, g.Win), dtype=gx_dtype, device=x.device)
            if grad_x.numel():
                if depthwise:
                    def grid(meta):
                        return (g.N * g.Cin * triton.cdiv(g.Hin, meta["BLOCK_I"]) * triton.cdiv(g.Win, meta["BLOCK_J"]),)

                    _launch(K._upsample_crop_add_bwd_input_depthwise_kernel, grid,
                            (grad_out, weight, grad_x, g.Cin, g.Hin, g.Win, g.kh, g.kw, g.H, g.W,
                             g.sh, g.sw, g.oy, g.ox, *grad_out.stride(), g.Cin, g.Cout, bucket),
                            K._BWD_DW_FIXED, x.device, IDX64=idx64)
                else:
                    def grid(meta):
                        tiles = triton.cdiv(g.Hin, meta["BLOCK_I"]) * triton.cdiv(g.Win, meta["BLOCK_J"])
                        return (g.N * tiles, triton.cdiv(g.Cin, meta["BLOCK_CI"]))

                    _launch(K._upsample_crop_add_bwd_input_kernel, grid,
                            (grad_out, weight, grad_x, g.Cin, g.Cout, g.Hin, g.Win, g.kh, g.kw, g.H, g.W,
                             g.sh, g.sw, g.oy, g.ox, *grad_out.stride(), bucket),
                            K._BWD_X_FIXED, x.device, IS_FP32=is_fp32, UPCAST=upcast, IDX64=idx64)
            grad_x = grad_x.to(x.dtype)
        if need_weight:
            total = g.N * g.Hin * g.Win
            if total == 0:
                grad_w = torch.zeros(weight.shape, dtype=weight.dtype, device=weight.device)
            else:
                # Upper bound of the program count (smallest blocks) to size the split.
                programs = g.kh * g.kw * triton.cdiv(g.Cin, 32) * triton.cdiv(g.Cout, 32)
                n_split, chunk = _num_splits(total, programs, x.device)
                part = torch.empty((n_split, g.Cin, g.Cout, g.kh, g.kw), dtype=torch.float32, device=x.device)

                def grid(meta):
                    return (g.kh * g.kw * triton.cdiv(g.Cin, meta["BLOCK_CI"]) * triton.cdiv(g.Cout, meta["BLOCK_CO"]),
                            n_split)

                _launch(K._upsample_crop_add_bwd_weight_kernel, grid,
                        (x, grad_out, part, g.N, g.Cin, g.Cout, g.Hin, g.Win, g.kh, g.kw, g.H, g.W,
                         g.sh, g.sw, g.oy, g.ox, *x.stride(), *grad_out.stride(), chunk, bucket),
                        K._BWD_W_FIXED, x.device, IS_FP32=is_fp32, UPCAST=upcast,
                        IDX64=idx64 or _idx64(part.numel(), total + chunk))
                grad_w = (part[0] if n_split == 1 else part.sum(0)).to(weight.dtype)
    return grad_x, grad_w


__all__ = ["DTYPES", "AUTOTUNE_ENV", "autotune_enabled", "tune_bucket",
           "upsample_crop_add_triton", "upsample_crop_add_backward_triton"]
