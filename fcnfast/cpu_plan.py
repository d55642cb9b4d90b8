"""The CPU backbone of :func:`fcnfast.optimize`: what the CPU route runs instead of the module's convs.

For a float32 fcnfast FCN on the CPU, :class:`CpuPlan` runs VGG16 as

- **oneDNN convolutions with prepacked weights and the ReLU fused** (``torch.ops.mkldnn
  ._convolution_pointwise``: the kernels inductor's freezing pass calls, here without
  compiling), in channels_last. fc6 stays a convolution: as one GEMM over im2col patches
  (torch.addmm) it measured slower;
- **the band computed once**: in the first ``band_blocks`` VGG blocks (conv1..conv3 by default)
  each convolution and pool runs on the rows that see the image (:mod:`fcnfast.band`), at full
  width, plus two rows on each side. The rows above and below are the same for every image of
  that width: they are computed once, by the same convolutions on the bands alone, and kept
  (:class:`_Bands`, per width and height parity); only their edge rows are stored, and the last
  pool's whole bands, to assemble the full map;
- **image by image**: a batch's trunk runs one image at a time (its activations then stay within
  reach of the caches), the pools and fc7 concatenated for the heads;
- then the model's own score layers and fused heads (``score_and_upsample``).

Results equal the module's forward within float32 rounding (different summation order:
tests/test_cpu_plan.py holds them to 1e-5 of the output's scale on odd sizes). The weights
are shared with the model, packed once at construction; nothing is compiled at call time.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .band import Band, padded_conv_band, pool_band, same_conv_band
from .host_memory import KEEP_MEMORY_ENV, keep_freed_memory
from .models.fcn import FCN
from .models.layout import CONV_KERNEL, FC_NAMES, FIRST_CONV_PADDING, POOL_KERNEL, POOL_STRIDE, SCALED_POOLS, VGG16_BLOCKS

__all__ = ["CpuPlan", "cpu_plan_reason", "KEEP_MEMORY_ENV"]

_CL = torch.channels_last
# Rows of the band kept next to the zone: a 3x3 conv needs 2 to grow the zone by one row.
HALO = 2
# Widths (and height parities) whose bands are kept.
MAX_BANDS = 16
# pool3 is the first map the heads read whole (score_pool3): the band blocks end there at the latest.
MAX_BAND_BLOCKS = min(SCALED_POOLS)


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
    if not isinstance(model, FCN) or cls._trunk is not FCN._trunk or cls.forward is not FCN.forward:
        return f"{cls.__name__} has its own forward"
    if len(model.layout.streams) != 1:
        return f"{model.layout.name} has {len(model.layout.streams)} trunks; the route runs one"
    return None


class _Conv:
    """One convolution with its oneDNN-packed weight (``padding`` overrides the layer's)."""

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        w = conv.weight.detach()
        self.padding = list(conv.padding)
        self.bias = conv.bias.detach() if conv.bias is not None else None
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(
            w.contiguous(), self.padding, list(conv.stride), list(conv.dilation), conv.groups)
        self.stride, self.dilation, self.groups = list(conv.stride), list(conv.dilation), conv.groups
        self.attr = "relu" if relu else "none"
        self.out_channels = conv.out_channels

    def __call__(self, x: Tensor, padding: Optional[Sequence[int]] = None) -> Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, list(padding or self.padding), self.stride, self.dilation, self.groups,
            self.attr, [], "")


class _Bands(NamedTuple):
    """The rows of one width's band-block maps that never see the image, for each stage (every
    conv and pool of the band blocks, in order): the last ``HALO`` rows above the zone and the
    first ``HALO`` below; and the whole bands of the last stage (the last pool's output)."""

    tops: List[Tensor]
    bottoms: List[Tensor]
    last_top: Tensor
    last_bottom: Tensor


class CpuPlan:
    """Runs an fcnfast FCN's forward on the CPU route (module docstring); ``plan(x)`` = ``model(x)``.

    ``model`` must pass :func:`cpu_plan_reason`; its weights must not change afterwards (they are
    packed here). ``band_blocks``: how many VGG blocks compute their band once per width (0: none).
    """

    def __init__(self, model: FCN, band_blocks: int = 3) -> None:
        if not 0 <= band_blocks <= MAX_BAND_BLOCKS:
            raise ValueError(f"band_blocks must be in [0, {MAX_BAND_BLOCKS}], got {band_blocks}")
        self.model = model
        self.band_blocks = int(band_blocks)
        (stream,) = model.layout.streams
        self.blocks: List[List[_Conv]] = [
            [_Conv(getattr(model, stream.layer(f"conv{block}_{i}")), True) for i in range(1, n + 1)]
            for block, (_, _, n) in enumerate(VGG16_BLOCKS, start=1)
        ]
        fc6, fc7 = (getattr(model, stream.layer(name)) for name in FC_NAMES)
        self.fc6, self.fc7 = _Conv(fc6, True), _Conv(fc7, True)
        self._bands: "OrderedDict[tuple, _Bands]" = OrderedDict()
        keep_freed_memory()

    def __call__(self, x: Tensor) -> Union[Tensor, Tuple[Tensor, ...]]:
        return self.model.score_and_upsample(x.shape[2:], [self.backbone(x)])

    def backbone(self, x: Tensor) -> Tuple[Dict[int, Tensor], Tensor]:
        """({block: pool{block}} from the last band block on, fc7's output) of a float32 (N, C, H, W)
        batch, as the model's ``_trunk`` (pools 3 and 4 and fc7 equal its, within rounding)."""
        if x.shape[0] == 1:
            return self._backbone_one(x)
        # Image by image: a batch's activations (conv1's alone is 125 MB per 500x500 image) leave
        # every cache and TLB behind, and oneDNN slows with them: per image, eager PyTorch takes
        # 1.28x longer at batch 8 than at batch 1 (500x500, 2 threads), this route no longer
        # (benchmarks/results/cpu-amd-epyc/interleaved-500-b{1,8}). The values are the same.
        parts = [self._backbone_one(x[i:i + 1]) for i in range(x.shape[0])]
        taps = {block: torch.cat([part[0][block] for part in parts]) for block in parts[0][0]}
        return taps, torch.cat([part[1] for part in parts])

    def _backbone_one(self, x: Tensor) -> Tuple[Dict[int, Tensor], Tensor]:
        h = x.contiguous(memory_format=_CL)
        taps: Dict[int, Tensor] = {}
        first = 1
        if self.band_blocks:
            h = taps[self.band_blocks] = self._band_blocks(h)
            first = self.band_blocks + 1
        for index in range(first, len(self.blocks) + 1):
            for conv in self.blocks[index - 1]:
                h = conv(h)
            h = taps[index] = F.max_pool2d(h, POOL_KERNEL, POOL_STRIDE, ceil_mode=True)
        return taps, self.fc7(self.fc6(h))

    # -- the band blocks ---------------------------------------------------------------------------

    def _stages(self, height: int) -> List[Tuple[Optional[_Conv], Band]]:
        """(conv, or None for a pool; the band of its output) of every band-block stage."""
        stages: List[Tuple[Optional[_Conv], Band]] = []
        band = padded_conv_band(height, FIRST_CONV_PADDING, CONV_KERNEL)
        for index in range(1, self.band_blocks + 1):
            for conv in self.blocks[index - 1]:
                if stages:
                    band = same_conv_band(band, conv.padding[0])
                stages.append((conv, band))
            band = pool_band(band, POOL_KERNEL, POOL_STRIDE)
            stages.append((None, band))
        return stages

    def _band_blocks(self, x: Tensor) -> Tensor:
        """The last band block's pool output: each stage on its zone (and HALO band rows each side)."""
        n, height, width = x.shape[0], x.shape[2], x.shape[3]
        stages = self._stages(height)
        bands = self._bands_for(height, width, stages)
        conv1, band = stages[0]
        pad = FIRST_CONV_PADDING
        # conv1_1's zone rows at full width: the image padded by its distance to those rows.
        z = conv1(x, padding=(pad - band.zone[0], pad))
        for i in range(1, len(stages)):
            conv, band = stages[i]
            prev = stages[i - 1][1]
            top, bottom = bands.tops[i - 1], bands.bottoms[i - 1]
            if conv is not None:  # HALO rows each side in, the zone grown by one row each side out
                z = conv(_stack(top, z, bottom, n), padding=(0, conv.padding[1]))
            else:  # windows start at even rows: take one band row where the zone starts or ends odd
                a, b = prev.zone
                z = F.max_pool2d(_stack(top[:, :, HALO - a % 2:], z, bottom[:, :, : b % 2], n),
                                 POOL_KERNEL, POOL_STRIDE, ceil_mode=True)
        return _stack(bands.last_top, z, bands.last_bottom, n)

    def _bands_for(self, height: int, width: int, stages) -> _Bands:
        """The bands of this width and height parity (what they depend on besides the weights),
        computed by the stages themselves on the bands alone at the first call that needs them."""
        key = (width, height % 2 ** self.band_blocks)
        bands = self._bands.get(key)
        if bands is not None:
            self._bands.move_to_end(key)
            return bands
        conv1, band = stages[0]
        canvas = width + 2 * FIRST_CONV_PADDING - 2
        # conv1_1's rows outside the zone read only zero padding: relu(bias) everywhere.
        value = conv1.bias.relu().view(1, -1, 1, 1)
        top = value.expand(1, conv1.out_channels, band.above, canvas).contiguous(memory_format=_CL)
        bottom = value.expand(1, conv1.out_channels, band.below, canvas).contiguous(memory_format=_CL)
        tops, bottoms = [top[:, :, -HALO:]], [bottom[:, :, :HALO]]
        for i in range(1, len(stages)):
            conv, band = stages[i]
            prev = stages[i - 1][1]
            if conv is not None:  # the conv's own zero padding is true at the canvas edge only
                top = conv(top)[:, :, : band.above]
                bottom = conv(bottom)[:, :, bottom.shape[2] - band.below:]
            else:
                a, b = prev.zone
                top = F.max_pool2d(top[:, :, : a - a % 2], POOL_KERNEL, POOL_STRIDE, ceil_mode=True)
                bottom = F.max_pool2d(bottom[:, :, b % 2:], POOL_KERNEL, POOL_STRIDE, ceil_mode=True)
            if min(band.above, band.below) < HALO:
                raise RuntimeError(f"the image reaches row {band.zone} of {band.size}: too close to the canvas "
                                   f"edge for band_blocks={self.band_blocks}")
            tops.append(top[:, :, -HALO:].contiguous(memory_format=_CL))
            bottoms.append(bottom[:, :, :HALO].contiguous(memory_format=_CL))
        bands = _Bands(tops, bottoms, top.contiguous(memory_format=_CL), bottom.contiguous(memory_format=_CL))
        self._bands[key] = bands
        while len(self._bands) > MAX_BANDS:
            self._bands.popitem(last=False)
        return bands


def _stack(top: Tensor, middle: Tensor, bottom: Tensor, n: int) -> Tensor:
    """``top``, ``middle``, ``bottom`` one above the other (rows), the bands repeated for n images."""
    shape = (n, top.shape[1], -1, top.shape[3])
    return torch.cat([top.expand(shape), middle, bottom.expand(shape)], dim=2).contiguous(memory_format=_CL)
