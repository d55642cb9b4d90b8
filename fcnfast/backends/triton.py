"""The triton backend: launchers of the Triton kernels in ``fcnfast.kernels.upsample_crop_add``
(fp32, fp16, bf16).

The kernels (and their autotune configurations) live in ``kernels/``; this module allocates
outputs, picks autotuned or fixed configurations and launches. Kernels run on PyTorch's
current stream of the tensors' device. Triton is imported at the first probe or launch, so
fcnfast imports, and says why this backend cannot run, without it.

``FCNFAST_TRITON_AUTOTUNE``: ``1`` (the default on CUDA) runs ``triton.autotune`` over each
kernel's configurations once per autotune key; ``0`` launches every kernel with its fixed
configuration (tests, sanitizers, reproducible timing). The interpreter always uses the fixed one.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Optional, Tuple

import torch

from fcnfast.kernels import triton_interpreted

from . import _sync_check
from ..geometry import Geometry
from .base import Availability, Backend, State, device_guard, dtype_names

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
AUTOTUNE_ENV = "FCNFAST_TRITON_AUTOTUNE"
# Offsets switch to int64 when any tensor spans more elements than this (headroom below
# 2^31 so that the masked-off lanes' offsets cannot wrap either).
INT32_SAFE = 2**30
FIXED_NUM_WARPS = 4


@functools.lru_cache(maxsize=None)
def _kernels():
    """(the triton module, the kernels module), imported once."""
    import triton

    from fcnfast.kernels import upsample_crop_add

    return triton, upsample_crop_add


def autotune_enabled() -> bool:
    """Whether launches go through ``triton.autotune`` (``FCNFAST_TRITON_AUTOTUNE``, default 1)."""
    value = os.environ.get(AUTOTUNE_ENV, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{AUTOTUNE_ENV} must be 0 or 1, got {value!r}")
    return value == "1" and not triton_interpreted()


def tune_bucket(work: int) -> int:
    """The autotune key's size bucket: the bit length of the work size (a power-of-two band)."""
    return int(work).bit_length()


def _extent(t: Optional[torch.Tensor]) -> int:
    """Elements spanned by a strided tensor (the largest offset + 1)."""
    if t is None or t.numel() == 0:
        return 0
    return 1 + sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()))


def _idx64(*extents: int) -> bool:
    return max(extents) >= INT32_SAFE


def _strides(t: Optional[torch.Tensor]):
    return (0, 0, 0, 0) if t is None else tuple(t.stride())


def _launch(kernel, grid, args, fixed, device: torch.device, **constexprs) -> None:
    """Launch ``kernel`` (autotuned, or bare with its ``fixed`` configuration), then the sync check."""
    triton, _ = _kernels()
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


def _num_splits(total: int, programs: int, device: torch.device) -> Tuple[int, int]:
    """(n_split, chunk) for the grad_w reduction over ``total`` (n, i, j) positions."""
    triton, K = _kernels()
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        target = max(1, (4 * sms) // max(programs, 1))
    else:
        target = 2  # interpreter: exercise the split reduction, keep it cheap
    max_split = triton.cdiv(total, K._BWD_W_CHUNK)
    n_split = max(1, min(target, max_split))
    chunk = triton.cdiv(triton.cdiv(total, n_split), K._BWD_W_CHUNK) * K._BWD_W_CHUNK
    return triton.cdiv(total, chunk), chunk


class TritonBackend(Backend):
    """Compiled for CUDA devices; on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``).

    fp32 accumulation; x, skip and grad_out are read through their strides.
    """

    name = "triton"
    dtypes = DTYPES

    @functools.cached_property
    def interpreted(self) -> bool:
        """Whether the kernels run under the interpreter; fixed at first use, as in the kernels."""
        return triton_interpreted()

    @property
    def device_types(self) -> Tuple[str, ...]:
        return ("cuda", "cpu") if self.interpreted else ("cuda",)

    def _probe(self):
        if importlib.util.find_spec("triton") is None:
            return Availability(State.ABSENT, "triton is not installed (pip install triton)")
        if not torch.cuda.is_available() and not self.interpreted:
            return Availability(State.ABSENT,
                                "triton needs a CUDA device (or TRITON_INTERPRET=1 to run on the CPU, slowly)")
        try:
            triton, _ = _kernels()
        except Exception as exc:  # a broken kernel file must be visible, not skipped
            return Availability(State.BROKEN, f"importing the Triton kernels failed: {type(exc).__name__}: {exc}")
        mode = "interpreter (TRITON_INTERPRET=1)" if self.interpreted else "compiled for CUDA"
        return Availability(State.READY, f"triton {triton.__version__}, {mode}")

    def why_not(self, device_type, dtype):
        reason = super().why_not(device_type, dtype)
        if reason is None and self.interpreted and dtype == torch.bfloat16:
            # The launchers can run it (the kernels then compute in fp32), but bf16 has
            # never been offered under the interpreter: a direct launch is the only way in.
            offered = dtype_names(d for d in self.dtypes if d != torch.bfloat16)
            reason = (f"backend {self.name!r} does not support {dtype} on {device_type} under the Triton "
                      f"interpreter (supports {offered})")
        return reason

    def forward(self, x, weight, bias, skip, geom, depthwise):
        self.check_launch(geom, x, weight, bias=bias, skip=skip, depthwise=depthwise)
        triton, K = _kernels()
        g = geom
        out = torch.empty((g.N, g.Cout, g.H, g.W), dtype=x.dtype, device=x.device)
        if out.numel() == 0:
            return out
        weight = weight.contiguous()
        bias = None if bias is None else bias.contiguous()
        idx64 = _idx64(_extent(x), _extent(skip), out.numel(), weight.numel())
        upcast = K.INTERPRETED and x.dtype == torch.bfloat16
        result = out
        if upcast:  # interpreter only: its fp32 -> bf16 cast truncates, torch's rounds
            out = torch.empty(out.shape, dtype=torch.float32, device=x.device)
        # Unused pointers still need a valid tensor argument; HAS_* masks every access.
        b_arg = bias if bias is not None else out
        s_arg = skip if skip is not None else out
        common = (g.Hin, g.Win, g.kh, g.kw, g.H, g.W, g.sh, g.sw, g.oy, g.ox, g.sy, g.sx,
                  *x.stride(), *_strides(skip))
        bucket = tune_bucket(g.N * g.H * g.W)
        with device_guard(x.device):
            if depthwise:
                def grid(meta):
                    return (g.N * g.Cout * triton.cdiv(g.H, meta["BLOCK_H"]) * triton.cdiv(g.W, meta["BLOCK_W"]),)

                _launch(K._upsample_crop_add_fwd_depthwise_kernel, grid,
                        (x, weight, b_arg, s_arg, out, g.Cout, *common, g.Cin, g.Cout, bucket), K._DW_FIXED,
                        x.device, HAS_BIAS=bias is not None, HAS_SKIP=skip is not None, IDX64=idx64)
            else:
                def grid(meta):
                    tiles = (triton.cdiv(triton.cdiv(g.H, g.sh), meta["BLOCK_MY"])
                             * triton.cdiv(triton.cdiv(g.W, g.sw), meta["BLOCK_MX"]))
                    return (g.N * tiles * g.sh * g.sw, triton.cdiv(g.Cout, meta["BLOCK_CO"]))

                _launch(K._upsample_crop_add_fwd_kernel, grid,
                        (x, weight, b_arg, s_arg, out, g.Cin, g.Cout, *common, bucket), K._FWD_FIXED, x.device,
                        HAS_BIAS=bias is not None, HAS_SKIP=skip is not None,
                        IS_FP32=x.dtype == torch.float32, UPCAST=upcast, IDX64=idx64)
        if out is not result:
            result.copy_(out)
        return result

    def backward(self, grad_out, x, weight, geom, depthwise, need_input, need_weight):
        self.check_launch(geom, x, weight, grad_out=grad_out, depthwise=depthwise)
        weight = weight.contiguous()
        g = geom
        idx64 = _idx64(_extent(x), _extent(grad_out), g.N * g.Cin * g.Hin * g.Win, weight.numel())
        grad_x = grad_w = None
        with device_guard(x.device):
            if need_input:
                grad_x = _grad_input(grad_out, weight, g, depthwise, idx64)
            if need_weight:
                grad_w = _grad_weight(grad_out, x, weight, g, idx64)
        return grad_x, grad_w


def _flags(dtype: torch.dtype):
    """The IS_FP32 / UPCAST constexprs of the dense kernels for ``dtype``."""
    _, K = _kernels()
    return dict(IS_FP32=dtype == torch.float32, UPCAST=K.INTERPRETED and dtype == torch.bfloat16)


def _grad_input(grad_out, weight, g: Geometry, depthwise: bool, idx64: bool) -> torch.Tensor:
    triton, K = _kernels()
    flags = _flags(weight.dtype)
    # interpreter + bf16: write fp32 and let torch round (the interpreter truncates)
    gx_dtype = torch.float32 if flags["UPCAST"] else weight.dtype
    grad_x = torch.empty((g.N, g.Cin, g.Hin, g.Win), dtype=gx_dtype, device=weight.device)
    bucket = tune_bucket(g.N * g.Hin * g.Win)
    if grad_x.numel() and depthwise:
        def grid(meta):
            return (g.N * g.Cin * triton.cdiv(g.Hin, meta["BLOCK_I"]) * triton.cdiv(g.Win, meta["BLOCK_J"]),)

        _launch(K._upsample_crop_add_bwd_input_depthwise_kernel, grid,
                (grad_out, weight, grad_x, g.Cin, g.Hin, g.Win, g.kh, g.kw, g.H, g.W,
                 g.sh, g.sw, g.oy, g.ox, *grad_out.stride(), g.Cin, g.Cout, bucket),
                K._BWD_DW_FIXED, weight.device, IDX64=idx64)
    elif grad_x.numel():
        def grid(meta):
            tiles = triton.cdiv(g.Hin, meta["BLOCK_I"]) * triton.cdiv(g.Win, meta["BLOCK_J"])
            return (g.N * tiles, triton.cdiv(g.Cin, meta["BLOCK_CI"]))

        _launch(K._upsample_crop_add_bwd_input_kernel, grid,
                (grad_out, weight, grad_x, g.Cin, g.Cout, g.Hin, g.Win, g.kh, g.kw, g.H, g.W,
                 g.sh, g.sw, g.oy, g.ox, *grad_out.stride(), bucket),
                K._BWD_X_FIXED, weight.device, IDX64=idx64, **flags)
    return grad_x.to(weight.dtype)


def _grad_weight(grad_out, x, weight, g: Geometry, idx64: bool) -> torch.Tensor:
    """Reduced as fp32 partials over a split of the (n, i, j) positions, summed, then cast."""
    triton, K = _kernels()
    total = g.N * g.Hin * g.Win
    if total == 0:
        return torch.zeros(weight.shape, dtype=weight.dtype, device=weight.device)
    # Upper bound of the program count (smallest blocks) to size the split.
    programs = g.kh * g.kw * triton.cdiv(g.Cin, 32) * triton.cdiv(g.Cout, 32)
    n_split, chunk = _num_splits(total, programs, x.device)
    part = torch.empty((n_split, g.Cin, g.Cout, g.kh, g.kw), dtype=torch.float32, device=x.device)

    def grid(meta):
        return (g.kh * g.kw * triton.cdiv(g.Cin, meta["BLOCK_CI"]) * triton.cdiv(g.Cout, meta["BLOCK_CO"]), n_split)

    _launch(K._upsample_crop_add_bwd_weight_kernel, grid,
            (x, grad_out, part, g.N, g.Cin, g.Cout, g.Hin, g.Win, g.kh, g.kw, g.H, g.W,
             g.sh, g.sw, g.oy, g.ox, *x.stride(), *grad_out.stride(), chunk, tune_bucket(total)),
            K._BWD_W_FIXED, x.device, IDX64=idx64 or _idx64(part.numel(), total + chunk), **_flags(x.dtype))
    return (part[0] if n_split == 1 else part.sum(0)).to(weight.dtype)


BACKEND = TritonBackend()

__all__ = ["DTYPES", "AUTOTUNE_ENV", "FIXED_NUM_WARPS", "autotune_enabled", "tune_bucket", "TritonBackend", "BACKEND"]
