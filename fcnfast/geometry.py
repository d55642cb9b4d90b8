"""Geometry and input validation of ``upsample_crop_add`` (the lowest layer: no kernels here).

Every backend receives a validated :class:`Geometry`; the C++/CUDA kernels get the same
fifteen integers in the same order (``csrc/include/fcnfast/index_math.h``), so a bound
checked here is a bound the kernels may rely on.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch

IntPair = Union[int, Sequence[int]]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class Geometry(NamedTuple):
    """Shapes and window of one call. Field order is the C ABI order (index_math.h)."""

    N: int
    Cin: int
    Cout: int
    Hin: int
    Win: int
    kh: int
    kw: int
    H: int
    W: int
    sh: int
    sw: int
    oy: int
    ox: int
    sy: int
    sx: int

    @property
    def full_size(self) -> Tuple[int, int]:
        """Size of the un-cropped transposed-conv output: (Hin-1)*s + k per axis."""
        return full_transposed_size(self.Hin, self.Win, self.kh, self.kw, self.sh, self.sw)


def pair(value: IntPair, name: str) -> Tuple[int, int]:
    """``3 -> (3, 3)``; ``(2, 3) -> (2, 3)``; anything else raises TypeError naming ``name``."""
    # Fast path, taken by every call of the op (its wrapper passes lists of two ints).
    if type(value) in (list, tuple) and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return (value[0], value[1])
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int) or isinstance(value, torch.SymInt):
        return (value, value)
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) != 2 or not all(
        isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool) for v in items
    ):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return items  # type: ignore[return-value]


def full_transposed_size(Hin: int, Win: int, kh: int, kw: int, sh: int, sw: int) -> Tuple[int, int]:
    return ((Hin - 1) * sh + kh, (Win - 1) * sw + kw)


def _shape(t: Optional[torch.Tensor]) -> str:
    return "None" if t is None else f"{tuple(t.shape)}"


def _given(x, weight, bias, skip):
    """(name, tensor) of the op's tensor arguments; bias and skip only when given."""
    return [(name, t) for name, t in (("x", x), ("weight", weight), ("bias", bias), ("skip", skip))
            if t is not None or name in ("x", "weight")]


def _require_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def _require_floating(name: str, t) -> None:
    _require_tensor(name, t)
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} has dtype {t.dtype}; upsample_crop_add supports float32, float64, float16 and bfloat16"
        )


def check_tensor_types(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                       skip: Optional[torch.Tensor]) -> None:
    """TypeError naming the argument unless x and weight are tensors and bias, skip tensors or None."""
    for name, t in _given(x, weight, bias, skip):
        _require_tensor(name, t)


def check_tensors(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  skip: Optional[torch.Tensor]) -> None:
    """Type, dtype and device checks (TypeError / ValueError naming the argument)."""
    given = _given(x, weight, bias, skip)
    for name, t in given:
        _require_floating(name, t)
    for name, t in given[1:]:
        if t.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but x has dtype {x.dtype}; they must match")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}; they must match")


def resolve_geometry(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    skip: Optional[torch.Tensor],
    stride: IntPair,
    offset: IntPair,
    size: Optional[IntPair],
    skip_offset: IntPair,
) -> Geometry:
    """Validate every shape and bound of the op contract and return the call's Geometry.

    The arguments come in the order of the registered op's schema. ``size`` None means the
    full transposed-conv output minus ``offset``. Raises TypeError for non-tensors, dtypes
    and int arguments (:func:`check_tensors`, :func:`pair`), and ValueError naming the
    argument and the shapes for: wrong ndim, channel mismatch, stride < 1, negative
    offsets, an empty or too-large window, a skip too small for skip_offset + size, a bias
    of the wrong length, and tensors on different devices.
    """
    check_tensors(x, weight, bias, skip)
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, Cin, Hin, Win), got shape {_shape(x)}")
    if weight.dim() != 4:
        raise ValueError(
            f"weight must be 4-D (Cin, Cout, kh, kw) as in nn.ConvTranspose2d, got shape {_shape(weight)}"
        )
    N, Cin, Hin, Win = x.shape
    wCin, Cout, kh, kw = weight.shape
    if wCin != Cin:
        raise ValueError(
            f"channel mismatch: x has Cin={Cin} (shape {_shape(x)}) but weight has "
            f"Cin={wCin} (shape {_shape(weight)}, layout (Cin, Cout, kh, kw))"
        )
    if Cin < 1 or Hin < 1 or Win < 1:
        raise ValueError(f"x must have Cin, Hin, Win >= 1, got shape {_shape(x)}")
    if kh < 1 or kw < 1 or Cout < 1:
        raise ValueError(f"weight must have Cout, kh, kw >= 1, got shape {_shape(weight)}")
    sh, sw = pair(stride, "stride")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be >= 1, got {(sh, sw)}")
    oy, ox = pair(offset, "offset")
    if oy < 0 or ox < 0:
        raise ValueError(f"offset must be non-negative, got {(oy, ox)}")
    sy, sx = pair(skip_offset, "skip_offset")
    if sy < 0 or sx < 0:
        raise ValueError(f"skip_offset must be non-negative, got {(sy, sx)}")
    full_h, full_w = full_transposed_size(Hin, Win, kh, kw, sh, sw)
    if size is None:
        H, W = full_h - oy, full_w - ox
        if H < 1 or W < 1:
            raise ValueError(
                f"offset {(oy, ox)} leaves nothing of the transposed-conv output of size "
                f"{(full_h, full_w)} (x {_shape(x)}, weight {_shape(weight)}, stride {(sh, sw)})"
            )
    else:
        H, W = pair(size, "size")
        if H < 1 or W < 1:
            raise ValueError(f"size must be >= 1 per axis, got {(H, W)}")
        if oy + H > full_h or ox + W > full_w:
            raise ValueError(
                f"window offset {(oy, ox)} + size {(H, W)} = {(oy + H, ox + W)} exceeds the "
                f"transposed-conv output size {(full_h, full_w)} (x {_shape(x)}, weight "
                f"{_shape(weight)}, stride {(sh, sw)})"
            )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != Cout):
        raise ValueError(f"bias must have shape ({Cout},) to match weight {_shape(weight)}, got {_shape(bias)}")
    if skip is not None:
        if skip.dim() != 4:
            raise ValueError(f"skip must be 4-D (N, Cout, Hs, Ws), got shape {_shape(skip)}")
        if skip.shape[0] != N or skip.shape[1] != Cout:
            raise ValueError(
                f"skip shape {_shape(skip)} must have N={N} and Cout={Cout} "
                f"(x {_shape(x)}, weight {_shape(weight)})"
            )
        if sy + H > skip.shape[2] or sx + W > skip.shape[3]:
            raise ValueError(
                f"skip of shape {_shape(skip)} is too small for skip_offset {(sy, sx)} + size "
                f"{(H, W)} = {(sy + H, sx + W)}"
            )
    return Geometry(N, Cin, Cout, Hin, Win, kh, kw, H, W, sh, sw, oy, ox, sy, sx)


def check_grad_out(geom: Geometry, grad_out: torch.Tensor, x: torch.Tensor) -> None:
    """The output gradient of the call ``geom`` describes: a floating (N, Cout, H, W) tensor on
    x's device (TypeError / ValueError naming it). Its dtype may differ from x's."""
    _require_floating("grad_out", grad_out)
    if grad_out.device != x.device:
        raise ValueError(f"grad_out is on {grad_out.device} but x is on {x.device}; they must match")
    expected = (geom.N, geom.Cout, geom.H, geom.W)
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"grad_out must have the output's shape {expected}, got {_shape(grad_out)}")


__all__ = [
    "Geometry",
    "SUPPORTED_DTYPES",
    "pair",
    "full_transposed_size",
    "check_tensor_types",
    "check_tensors",
    "resolve_geometry",
    "check_grad_out",
]
