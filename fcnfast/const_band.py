"""Where FCN's early feature maps depend on the image: the exact constant band of the pad-100 canvas.

conv1_1 pads the image by 100, so its output is a canvas of (H+198) x (W+198) in which only
the rows and columns near the image see it: elsewhere it is relu(bias), one value per channel.
The next 3x3 convolutions keep that value constant (their own per-channel value) except
within one more pixel of the image's zone and within a growing ring at the canvas edge, where
their zero padding differs from the constant; the 2x2 pools halve both. A pixel of such a map
varies only if

    (its row is in the zone's rows and its column in the zone's columns)
    or its row is in a ring row or its column in a ring column,

and holds the layer's constant otherwise. Along each axis that is one :class:`Axis`: the
zone's interval and the two ring widths, propagated layer by layer below (plain integers: no
tensors here). :mod:`fcnfast.cpu_plan` computes only the varying rows (and the ring columns of
the others) and fills the rest with the constant; tests/test_const_band.py checks every formula
against maps computed in full, on odd sizes.
"""

from __future__ import annotations

from typing import List, NamedTuple, Tuple

Interval = Tuple[int, int]  # half-open [start, stop)


class Axis(NamedTuple):
    """One axis of a canvas of ``size`` pixels: the image's ``zone`` and the edge rings
    ``[0, lo)`` and ``[size - hi, size)``, the pixels the zero padding at the edge reached."""

    size: int
    zone: Interval
    lo: int = 0
    hi: int = 0

    def varying(self, min_gap: int = 1) -> List[Interval]:
        """The zone and rings as sorted, disjoint intervals; gaps narrower than ``min_gap`` are
        closed (treating a few constant pixels as varying is always exact)."""
        parts = [iv for iv in ((0, self.lo), self.zone, (self.size - self.hi, self.size)) if iv[1] > iv[0]]
        return merge(parts, min_gap)

    def rings(self) -> List[Interval]:
        """The edge rings alone, as intervals."""
        return merge([iv for iv in ((0, self.lo), (self.size - self.hi, self.size)) if iv[1] > iv[0]])


def merge(intervals: List[Interval], min_gap: int = 1) -> List[Interval]:
    """Sorted disjoint intervals covering ``intervals``, joining those less than ``min_gap`` apart."""
    out: List[List[int]] = []
    for a, b in sorted(intervals):
        if out and a - out[-1][1] < min_gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def complement(intervals: List[Interval], size: int) -> List[Interval]:
    """The parts of ``[0, size)`` outside the sorted disjoint ``intervals``."""
    out, start = [], 0
    for a, b in intervals:
        if a > start:
            out.append((start, a))
        start = max(start, b)
    if start < size:
        out.append((start, size))
    return out


def _clip(iv: Interval, size: int) -> Interval:
    return max(iv[0], 0), min(iv[1], size)


def padded_conv_axis(n: int, pad: int, kernel: int) -> Axis:
    """The first convolution, on an image axis of ``n`` pixels zero-padded by ``pad``: output
    pixel o reads padded pixels [o, o+kernel), so it sees the image when o + kernel > pad and
    o < pad + n. No rings: outside the zone every window holds only zeros."""
    size = n + 2 * pad - kernel + 1
    return Axis(size, _clip((pad - kernel + 1, pad + n), size))


def same_conv_axis(axis: Axis, pad: int) -> Axis:
    """A stride-1 convolution with ``kernel = 2 * pad + 1`` (same size): the zone grows by ``pad``
    on each side, and so does each ring, which also gains the pixels the padding reaches."""
    if pad == 0:
        return axis
    a, b = axis.zone
    zone = _clip((a - pad, b + pad), axis.size) if b > a else axis.zone
    return Axis(axis.size, zone, min(axis.lo + pad, axis.size), min(axis.hi + pad, axis.size))


def pool_axis(axis: Axis, kernel: int, stride: int) -> Axis:
    """A max pool without padding in ceil mode: output pixel o reads [o*stride, o*stride + kernel)
    (clipped to the axis); it varies when that window meets a varying pixel. The max of a window
    of constants is the constant, so the constant carries over unchanged."""
    size = -(-(axis.size - kernel) // stride) + 1
    if (size - 1) * stride >= axis.size:  # the last window must start inside the input (torch's rule)
        size -= 1

    def outputs(iv: Interval) -> Interval:
        if iv[1] <= iv[0]:
            return (0, 0)
        first = max(0, -(-(iv[0] - kernel + 1) // stride))
        return first, min(size, (iv[1] - 1) // stride + 1)

    lo = outputs((0, axis.lo))[1]
    hi_start = outputs((axis.size - axis.hi, axis.size))[0] if axis.hi else size
    return Axis(size, outputs(axis.zone), lo, size - hi_start)


__all__ = ["Axis", "Interval", "merge", "complement", "padded_conv_axis", "same_conv_axis", "pool_axis"]
