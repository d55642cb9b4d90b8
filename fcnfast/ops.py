"""The fused op ``fcnfast::upsample_crop_add``: registration, fake kernel, autograd, backend choice.

Data flows one way: kernels (Triton / C++ / CUDA) -> launchers (``fcnfast.backends``) ->
the ops registered here -> modules (``fcnfast.nn``) -> models. Everything above this file
calls :func:`upsample_crop_add`; nothing here knows about models.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from . import backends
from .geometry import IntPair, check_grad_out, check_tensor_types, pair, resolve_geometry

# depthwise argument of the registered op: -1 detect (cached), 0 dense, 1 require diagonal.
_DEPTHWISE_CODES = {None: -1, False: 0, True: 1}

# weight tensor -> (its _version when scanned, is channel-diagonal). Weak keys: an entry
# dies with its tensor, so a new tensor at a recycled address is never mistaken for it.
_diagonal_cache: "WeakIdKeyDictionary" = WeakIdKeyDictionary()


def is_channel_diagonal(weight: Tensor) -> bool:
    """Whether a (Cin, Cout, kh, kw) weight is zero wherever Cin != Cout (FCN's bilinear filters).

    Scans the weight once per tensor and version (in-place updates such as optimizer steps
    and ``load_state_dict`` bump the version), so calling it every forward is cheap.
    Writes through ``weight.data`` bypass the version counter: after such a write, call
    :func:`clear_depthwise_cache` or pass ``depthwise=False``. Inference tensors have no version
    counter and are scanned on every call (pass ``depthwise`` explicitly to avoid the scan).
    """
    if weight.dim() != 4 or weight.shape[0] != weight.shape[1]:
        return False
    # Inference tensors (made under torch.inference_mode) have no version counter: an in-place
    # write to one cannot be seen, so each call scans it afresh.
    version = None if weight.is_inference() else weight._version
    cached = _diagonal_cache.get(weight) if version is not None else None
    if cached is not None and cached[0] == version:
        return cached[1]
    with torch.no_grad():
        channels = weight.shape[0]
        off_diagonal = ~torch.eye(channels, dtype=torch.bool, device=weight.device)
        result = not bool(weight.detach()[off_diagonal].any())
    if version is not None:
        _diagonal_cache[weight] = (version, result)
    return result


def clear_depthwise_cache() -> None:
    """Forget every cached diagonal-weight detection (after writes through ``tensor.data``)."""
    _diagonal_cache.clear()


def _all_finite(t: Tensor) -> bool:
    """True only if every element of ``t`` is finite (one sum and a host sync).

    A NaN or an infinity makes the sum NaN or infinite, so a finite sum proves every element
    finite. The converse can fail (finite values whose sum overflows fp32/fp64), and then the
    caller takes the dense path, which is exact too. One sum costs a fraction of
    ``isfinite(t).all()``, which writes a bool tensor first (measured on 2 CPU threads for
    FCN-8s' upscore8 input at 500x500: 5 against 70 us at batch 1, 17 against 500 us at batch 8).

    While a CUDA graph is being captured a host sync is forbidden, so it answers True without
    looking: a captured graph keeps the depthwise path even for non-finite inputs."""
    if t.is_cuda and torch.cuda.is_current_stream_capturing():
        return True
    total = t.sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32)
    return math.isfinite(total.item())


def _resolve_depthwise(weight: Tensor, depthwise: int, data: Tensor, check_data: bool = True) -> bool:
    """Whether the call takes the depthwise path; ``data`` is the tensor the weight multiplies
    (x forward, grad_out for grad_x). ``check_data`` False leaves the finiteness test of ``data``
    to the backend (``Backend.forward_checks_finite``)."""
    if depthwise == 0:
        return False
    diagonal = is_channel_diagonal(weight)
    if depthwise == 1 and not diagonal:
        raise ValueError(
            f"depthwise=True requires a weight with Cin == Cout that is zero off the channel "
            f"diagonal; got weight of shape {tuple(weight.shape)} with off-diagonal entries"
        )
    # The depthwise path skips the zero off-diagonal taps, which conv_transpose2d multiplies:
    # 0 * inf and 0 * NaN are NaN. With a non-finite value in ``data`` the dense path gives
    # conv_transpose2d's outputs exactly. (A non-finite weight is either off the diagonal, so
    # not diagonal, or on it, where both paths multiply it alike.) ``data`` is small next to the
    # output, so the check costs little.
    return diagonal and (not check_data or _all_finite(data))


def _backend(requested: Optional[str], x: Tensor) -> backends.Backend:
    return backends.get(backends.resolve_backend(requested, x.device, x.dtype))


def _register(name: str, impl):
    """``impl`` as the custom op ``fcnfast::<name>`` on CUDA and CPU tensors; the backend choice
    inside it is per device."""
    op = torch.library.custom_op(f"fcnfast::{name}", mutates_args=(), device_types="cuda")(impl)
    op.register_kernel("cpu")(impl)
    return op


def _forward_impl(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    skip: Optional[Tensor],
    stride: Sequence[int],
    offset: Sequence[int],
    size: Optional[Sequence[int]],
    skip_offset: Sequence[int],
    depthwise: int,
    backend: Optional[str],
) -> Tensor:
    """The registered op: validates the call once, then runs it on the chosen backend.

    The arguments of :func:`upsample_crop_add` with every pair a list of two ints; ``size`` None
    is the full transposed-conv output minus ``offset``; ``depthwise`` a ``_DEPTHWISE_CODES`` value.
    """
    geom = resolve_geometry(x, weight, bias, skip, stride, offset, size, skip_offset)
    chosen = _backend(backend, x)
    use_depthwise = _resolve_depthwise(weight, depthwise, x, check_data=not chosen.forward_checks_finite)
    return chosen.forward(x, weight, bias, skip, geom, use_depthwise)


_upsample_crop_add_op = _register("upsample_crop_add", _forward_impl)


@_upsample_crop_add_op.register_fake
def _(x, weight, bias, skip, stride, offset, size, skip_offset, depthwise, backend):
    geom = resolve_geometry(x, weight, bias, skip, stride, offset, size, skip_offset)
    return x.new_empty((geom.N, geom.Cout, geom.H, geom.W))


def _backward_impl(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    offset: Sequence[int],
    size: Sequence[int],
    depthwise: int,
    backend: Optional[str],
    need_input: bool,
    need_weight: bool,
) -> Tuple[Tensor, Tensor]:
    """(grad_x, grad_weight); a gradient that is not needed comes back as an empty tensor.

    grad_out may come in another floating dtype than x: it is cast to x's, as autograd casts
    a gradient to its output's dtype, so every backend receives matching dtypes.
    """
    geom = resolve_geometry(x, weight, None, None, stride, offset, size, (0, 0))
    check_grad_out(geom, grad_out, x)
    chosen = _backend(backend, x)
    # The depthwise path is exact for grad_x; grad_weight is always dense, because the
    # gradient of a diagonal weight's off-diagonal entries is not zero.
    use_depthwise = _resolve_depthwise(weight, depthwise, grad_out)
    grad_x, grad_w = chosen.backward(grad_out.to(x.dtype), x, weight, geom, use_depthwise, need_input, need_weight)
    empty = x.new_empty((0,))
    return (grad_x if grad_x is not None else empty), (grad_w if grad_w is not None else empty)


_upsample_crop_add_backward_op = _register("upsample_crop_add_backward", _backward_impl)


@_upsample_crop_add_backward_op.register_fake
def _(grad_out, x, weight, stride, offset, size, depthwise, backend, need_input, need_weight):
    grad_x = x.new_empty(x.shape) if need_input else x.new_empty((0,))
    grad_w = weight.new_empty(weight.shape) if need_weight else weight.new_empty((0,))
    return grad_x, grad_w


def _setup_context(ctx, inputs, output):
    x, weight, bias, skip, stride, offset, size, skip_offset, depthwise, backend = inputs
    ctx.save_for_backward(x, weight)
    # The window's size from the output: the op's size argument may be None.
    ctx.args = (list(stride), list(offset), list(output.shape[2:]), depthwise, backend)
    ctx.skip_offset = list(skip_offset)
    ctx.skip_shape = None if skip is None else tuple(skip.shape)


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    need_x, need_w, need_bias, need_skip = ctx.needs_input_grad[:4]
    stride, offset, size, depthwise, backend = ctx.args
    grad_x = grad_w = grad_bias = grad_skip = None
    if need_x or need_w:
        gx, gw = torch.ops.fcnfast.upsample_crop_add_backward(
            grad_out, x, weight, stride, offset, size, depthwise, backend, need_x, need_w
        )
        grad_x = gx if need_x else None
        grad_w = gw if need_w else None
    if need_bias:
        grad_bias = grad_out.sum((0, 2, 3))
    if need_skip:
        # grad_out placed into zeros of the skip's shape at the skip offset.
        (sy, sx), (H, W), (_, _, Hs, Ws) = ctx.skip_offset, size, ctx.skip_shape
        grad_skip = F.pad(grad_out, (sx, Ws - sx - W, sy, Hs - sy - H))
    return grad_x, grad_w, grad_bias, grad_skip, None, None, None, None, None, None


_upsample_crop_add_op.register_autograd(_backward, setup_context=_setup_context)
# Under autocast the head runs in fp32: its inputs arrive in fp16/bf16 while the (frozen) filters
# stay fp32, and the heads are ~0.3% of FCN's FLOPs. The wrapper below applies the same policy
# before the op's dtype checks; these rules cover direct torch.ops calls.
_AUTOCAST_DEVICES = ("cpu", "cuda")
for _device_type in _AUTOCAST_DEVICES:
    torch.library.register_autocast("fcnfast::upsample_crop_add", _device_type, torch.float32)


def upsample_crop_add(
    x: Tensor,
    weight: Tensor,
    stride: IntPair,
    *,
    offset: IntPair = 0,
    size: Optional[IntPair] = None,
    skip: Optional[Tensor] = None,
    skip_offset: IntPair = 0,
    bias: Optional[Tensor] = None,
    depthwise: Optional[bool] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """Transposed-conv upsampling, crop and skip addition in one fused op.

    Returns the contiguous (N, Cout, H, W) tensor
    ``conv_transpose2d(x, weight, bias, stride)[:, :, oy:oy+H, ox:ox+W] + skip[:, :, sy:sy+H, sx:sx+W]``
    without materialising the full transposed-conv output.

    Args:
        x: (N, Cin, Hin, Win), any memory layout.
        weight: (Cin, Cout, kh, kw), the ``nn.ConvTranspose2d`` layout.
        stride, offset, skip_offset: int or (h, w). Offsets are the window's top-left corner.
        size: (H, W) of the window; None = full transposed-conv size minus ``offset``.
        skip: (N, Cout, Hs, Ws) with ``skip_offset + size <= (Hs, Ws)``, or None.
        bias: (Cout,) or None.
        depthwise: None detects a channel-diagonal weight (cached per tensor and version)
            and uses the 4-taps-per-output path; True requires it; False forces the dense path.
            An x holding NaN or +-inf takes the dense path either way, so non-finite inputs give
            conv_transpose2d's outputs (except while a CUDA graph is captured).
        backend: "reference" | "triton" | "cuda" | "cpp" | None (auto; FCNFAST_BACKEND overrides).

    Raises:
        TypeError: non-tensor or integer inputs, dtype mismatch, bad stride/offset types.
        ValueError: wrong ndim, channel mismatch, negative offsets, a window outside the
            transposed-conv output, a skip too small, device mismatch, unknown backend,
            depthwise=True with a non-diagonal weight.
        RuntimeError: an explicitly requested backend that cannot run here (with the reason).

    Under ``torch.autocast`` the op runs in float32 (its inputs are cast up) and returns float32.
    """
    if depthwise not in _DEPTHWISE_CODES:
        raise TypeError(f"depthwise must be None, True or False, got {depthwise!r}")
    # Only what the op's schema cannot carry is checked here (torch would reject a non-tensor or
    # a float stride with its own message); the op validates the call itself, once.
    check_tensor_types(x, weight, bias, skip)
    if x.device.type in _AUTOCAST_DEVICES and torch.is_autocast_enabled(x.device.type):
        x, weight, skip, bias = (
            t.float() if isinstance(t, Tensor) and t.is_floating_point() else t for t in (x, weight, skip, bias)
        )
    args = (
        x, weight, bias, skip, list(pair(stride, "stride")), list(pair(offset, "offset")),
        None if size is None else list(pair(size, "size")), list(pair(skip_offset, "skip_offset")),
        _DEPTHWISE_CODES[depthwise], backend,
    )
    if _eager_cpu_inference(x, weight, bias, skip):
        return _forward_impl(*args)
    return _OP(*args)


# The registered op, called by upsample_crop_add whenever anything may need to see it.
_OP = torch.ops.fcnfast.upsample_crop_add
_PLAIN_TENSOR_TYPES = (Tensor, torch.nn.Parameter)


def _eager_cpu_inference(*tensors: Optional[Tensor]) -> bool:
    """Whether a call may skip the registered op's dispatch and run its implementation directly
    (about 15 us of the ~65 us of FCN-8s' upscore2 at batch 1 on the 2-core CPU): plain CPU
    tensors, no gradient to record, and nothing that observes or transforms ops (tracing or
    torch.compile, torch function or dispatch modes, functorch transforms, the profiler).
    Every other call goes through the op, whose implementation is the same function."""
    present = [t for t in tensors if t is not None]
    if any(type(t) not in _PLAIN_TENSOR_TYPES or t.device.type != "cpu" for t in present):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in present):
        return False
    return not (
        torch.compiler.is_compiling()
        or torch._C._is_torch_function_mode_enabled()
        or torch._C._len_torch_dispatch_stack() > 0
        or torch._C._functorch.peek_interpreter_stack() is not None
        or torch.autograd.profiler._is_profiler_enabled
    )


__all__ = ["upsample_crop_add", "is_channel_diagonal", "clear_depthwise_cache"]
