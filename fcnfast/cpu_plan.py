"""The CPU backbone of :func:`fcnfast.optimize`: what the CPU route runs instead of the module's convs.

For a float32 fcnfast FCN on the CPU, :class:`CpuPlan` runs VGG16 as

- **oneDNN convolutions with prepacked weights and the ReLU fused** (``torch.ops.mkldnn
  ._convolution_pointwise``: the kernels inductor's freezing pass calls, here without
  compiling), in channels_last. fc6 stays a convolution: as one GEMM over im2col patches
  (torch.addmm) it measured slower;
- **the constant band skipped**: in the blocks listed by ``band_blocks`` (conv1..conv3 by
  default), only the rows where a map varies are convolved, at full width, and of the other
  rows only the ring columns at the canvas edge; the rest is filled with the layer's
  per-channel constant (:mod:`fcnfast.const_band` says where, and why that is exact);
- then the model's own score layers and fused heads (``score_and_upsample``).

Results equal the module's forward within float32 rounding (different summation order:
tests/test_cpu_plan.py holds them to 1e-5 of the output's scale on odd sizes). The weights
are shared with the model, packed once at construction; nothing is compiled at call time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .const_band import Axis, complement, padded_conv_axis, pool_axis, same_conv_axis
from .models.fcn import _FCNBase
from .models.layout import FIRST_CONV_PADDING, POOL_KERNEL, POOL_STRIDE, VGG16_BLOCKS

__all__ = ["CpuPlan", "cpu_plan_reason", "KEEP_MEMORY_ENV"]

_CL = torch.channels_last
# Constant rows below this share of a canvas are not worth separate convolution calls.
MIN_SAVING = 0.08
# Varying intervals closer than this many rows are convolved as one (each call re-reads 2 rows).
MIN_GAP = 4
#: "0" keeps glibc's default of returning large freed blocks to the OS (see keep_freed_memory).
KEEP_MEMORY_ENV = "FCNFAST_CPU_KEEP_MEMORY"


def cpu_plan_reason(model: nn.Module, dtype: torch.dtype, device: torch.device) -> Optional[str]:
    """None when :class:`CpuPlan` can run ``model`` (float32, CPU, oneDNN, the standard FCN
    forward), else why not (optimize() then runs the module itself)."""
    if device.type != "cpu":
        return f"the model is on {device}"
    if dtype != torch.float32:
        return f"the CPU route computes in float32, the model in {dtype}"
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return "this torch has no oneDNN (mkldnn) convolutions"
    cls = type(model)
    if not isinstance(model, _FCNBase) or cls._backbone is not _FCNBase._backbone or cls.forward is not _FCNBase.forward:
        return f"{cls.__name__} has its own forward"
    return None


_malloc_tuned = False


def keep_freed_memory() -> None:
    """Make glibc keep large freed blocks for reuse instead of unmapping them (once per process).

    Every FCN feature map is tens of MB; glibc serves each from a fresh mmap and unmaps it on
    free, so each forward page-faults all of its activations in again (measured: ~25% of a
    conv1_2 call). With mmap off for malloc and no trimming, freed maps are reused and the process
    keeps its peak activation memory, as an inference arena does. A no-op off glibc, or with
    ``FCNFAST_CPU_KEEP_MEMORY=0``.
    """
    global _malloc_tuned
    if _malloc_tuned or os.environ.get(KEEP_MEMORY_ENV, "1") == "0":
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
    mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1))
    mallopt(m_mmap_max, ctypes.c_int(0))


class _Conv:
    """One convolution with its oneDNN-packed weight; ``const`` is its output's per-channel value
    in the constant band (band blocks only)."""

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        w = conv.weight.detach()
        self.padding = list(conv.padding)
        self.bias = conv.bias.detach() if conv.bias is not None else None
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(
            w.contiguous(), self.padding, list(conv.stride), list(conv.dilation), conv.groups)
        self.stride, self.dilation, self.groups = list(conv.stride), list(conv.dilation), conv.groups
        self.attr = "relu" if relu else "none"
        self.out_channels = conv.out_channels
        self.const: Optional[Tensor] = None

    def __call__(self, x: Tensor, padding: Optional[Sequence[int]] = None) -> Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, list(padding or self.padding), self.stride, self.dilation, self.groups,
            self.attr, [], "")


class CpuPlan:
    """Runs an fcnfast FCN's forward on the CPU route (module docstring); ``plan(x)`` = ``model(x)``.

    ``model`` must pass :func:`cpu_plan_reason`; its weights must not change afterwards (they are
    packed here). ``band_blocks``: how many VGG blocks skip their constant band (0: none).
    """

    def __init__(self, model: _FCNBase, band_blocks: int = 3) -> None:
        self.model = model
        self.band_blocks = int(band_blocks)
        self.blocks: List[List[_Conv]] = []
        const: Optional[Tensor] = None  # the band's value: relu(bias), then relu(bias + sum_taps W . c)
        for block, (_, _, n) in enumerate(VGG16_BLOCKS, start=1):
            layers = [getattr(model, f"conv{block}_{i}") for i in range(1, n + 1)]
            self.blocks.append([_Conv(layer, True) for layer in layers])
            for conv, layer in zip(self.blocks[-1], layers):
                if block > self.band_blocks:
                    break
                bias = layer.bias.detach().double()
                taps = 0.0 if const is None else layer.weight.detach().double().sum((2, 3)) @ const
                const = (bias + taps).relu()
                conv.const = const.float()
        self.fc6, self.fc7 = _Conv(model.fc6, True), _Conv(model.fc7, True)
        keep_freed_memory()

    def __call__(self, x: Tensor) -> Tensor:
        return self.model.score_and_upsample(x.shape[2:], *self.backbone(x))

    def backbone(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(pool3, pool4, fc7 output) of a float32 (N, 3, H, W) batch, as ``model._backbone``."""
        h = x.contiguous(memory_format=_CL)
        rows = cols = None
        taps = {}
        for index, block in enumerate(self.blocks, start=1):
            for i, conv in enumerate(block):
                if index <= self.band_blocks:
                    h, rows, cols = self._band_conv(conv, h, rows, cols, first=(index, i) == (1, 0))
                else:
                    h = conv(h)
            h = F.max_pool2d(h, POOL_KERNEL, POOL_STRIDE, ceil_mode=True)
            if rows is not None:
                rows, cols = pool_axis(rows, POOL_KERNEL, POOL_STRIDE), pool_axis(cols, POOL_KERNEL, POOL_STRIDE)
                if index >= self.band_blocks:
                    rows = cols = None
            taps[index] = h
        return taps[3], taps[4], self.fc7(self.fc6(h))

    def _band_conv(self, conv: _Conv, x: Tensor, rows: Optional[Axis], cols: Optional[Axis],
                   first: bool) -> Tuple[Tensor, Axis, Axis]:
        """One band-block convolution: the output and its axes. The first conv reads the image
        (padded by 100); the others read a canvas whose constant band holds the previous constant."""
        if first:
            pad = FIRST_CONV_PADDING
            rows, cols = padded_conv_axis(x.shape[2], pad, 3), padded_conv_axis(x.shape[3], pad, 3)
            out = self._filled(x.shape[0], conv, rows.size, cols.size, rows)
            (a, b), (c, d) = rows.zone, cols.zone
            # Output rows [a, b) at full width: the image padded by its distance to those rows.
            out[:, :, a:b, :] = conv(x, padding=(pad - a, pad))
            return out, rows, cols
        rows, cols = same_conv_axis(rows, conv.padding[0]), same_conv_axis(cols, conv.padding[1])
        varying = rows.varying(MIN_GAP)
        if sum(b - a for a, b in varying) > (1 - MIN_SAVING) * rows.size:
            return conv(x), rows, cols
        out = self._filled(x.shape[0], conv, rows.size, cols.size, rows)
        for a, b in varying:
            _conv_window(conv, x, out, (a, b), (0, cols.size))
        for a, b in complement(varying, rows.size):
            for c, d in cols.rings():
                _conv_window(conv, x, out, (a, b), (c, d))
        return out, rows, cols

    @staticmethod
    def _filled(n: int, conv: _Conv, height: int, width: int, rows: Axis) -> Tensor:
        """A new (n, C, height, width) channels_last map whose rows outside ``rows.varying()`` hold
        the conv's constant (the varying rows are left for the caller to write)."""
        out = torch.empty((n, conv.out_channels, height, width), memory_format=_CL)
        value = conv.const.view(1, -1, 1, 1)
        for a, b in complement(rows.varying(MIN_GAP), height):
            out[:, :, a:b, :] = value
        return out


def _conv_window(conv: _Conv, x: Tensor, out: Tensor, rows: Tuple[int, int], cols: Tuple[int, int]) -> None:
    """out[..., rows, cols] = conv(x) there, for a same-size conv: reads the window grown by the
    padding (clipped to the canvas, where the conv's own zero padding is the true one)."""
    (a, b), (c, d) = rows, cols
    py, px = conv.padding
    s0, s1, t0, t1 = max(a - py, 0), min(b + py, x.shape[2]), max(c - px, 0), min(d + px, x.shape[3])
    for n in range(x.shape[0]):  # one image at a time: a row window of one image is contiguous
        window = x[n : n + 1, :, s0:s1, t0:t1]
        out[n : n + 1, :, a:b, c:d] = conv(window)[:, :, a - s0 : b - s0, c - t0 : d - t0]
