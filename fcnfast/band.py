"""Which rows of FCN's early feature maps see the image: the rest is the same for every image.

conv1_1 pads the image by 100, so its output is a canvas of (H+198) x (W+198) rows and columns,
and only rows 98 .. H+99 see an image row. Each later 3x3 convolution (padding 1) lets the
image reach one more row on each side, and each 2x2 pool halves the rows. The rows above and
below that *zone* never see the image: they depend on the weights, the canvas width and the
rows' distance to the canvas edge only (they are not constant across a row: near the canvas
edge the zero padding differs from the band's value), so they can be computed once per width
and reused for every image (:mod:`fcnfast.cpu_plan` does).

A :class:`Band` is the canvas's row count and the zone's half-open row interval; the functions
below carry it through the layers. Plain integers: tests/test_band.py checks them against maps
computed in full (rows outside the zone are equal for two different images, bit for bit).
"""

from __future__ import annotations

from typing import NamedTuple, Tuple


class Band(NamedTuple):
    """``size`` rows of a canvas, of which ``zone = (a, b)``, rows a .. b-1, see the image."""

    size: int
    zone: Tuple[int, int]

    @property
    def above(self) -> int:
        """Rows above the zone (the top band)."""
        return self.zone[0]

    @property
    def below(self) -> int:
        """Rows below the zone (the bottom band)."""
        return self.size - self.zone[1]


def padded_conv_band(n: int, pad: int, kernel: int) -> Band:
    """A stride-1 convolution of an image of ``n`` rows zero-padded by ``pad``: output row o reads
    padded rows o .. o+kernel-1, so it sees an image row when o + kernel > pad and o < pad + n."""
    size = n + 2 * pad - kernel + 1
    return Band(size, (max(pad - kernel + 1, 0), min(pad + n, size)))


def same_conv_band(band: Band, pad: int) -> Band:
    """A stride-1 convolution with ``kernel = 2 * pad + 1`` (same size): the zone grows by ``pad``
    rows on each side."""
    a, b = band.zone
    return Band(band.size, (max(a - pad, 0), min(b + pad, band.size)))


def pool_band(band: Band, kernel: int, stride: int) -> Band:
    """A max pool without padding in ceil mode: output row o reads rows o*stride .. o*stride +
    kernel - 1 (clipped to the canvas); it sees the image when that window meets the zone."""
    size = -(-(band.size - kernel) // stride) + 1
    if (size - 1) * stride >= band.size:  # the last window must start inside the input (torch's rule)
        size -= 1
    a, b = band.zone
    first = max(0, -(-(a - kernel + 1) // stride))
    return Band(size, (first, min(size, (b - 1) // stride + 1)))


__all__ = ["Band", "padded_conv_band", "same_conv_band", "pool_band"]
