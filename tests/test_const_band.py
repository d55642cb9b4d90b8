"""fcnfast.const_band: the pixels it calls constant are constant, in maps computed in full.

A small float64 stack with FCN's geometry (a 3x3 conv padded by 100, 3x3 'same' convs, 2x2/2
ceil-mode pools) and large random biases, so that every layer's constant is far from zero and
a pixel wrongly called constant would show.
"""

import pytest
import torch
import torch.nn.functional as F

from fcnfast.const_band import Axis, complement, merge, padded_conv_axis, pool_axis, same_conv_axis

# (kind, channels): conv padded by 100, then FCN's pattern of same convs and pools.
STACK = [("first", 4), ("conv", 5), ("pool", 0), ("conv", 4), ("conv", 3), ("pool", 0), ("conv", 4), ("pool", 0)]


def _varying_mask(rows: Axis, cols: Axis) -> torch.Tensor:
    mask = torch.zeros(rows.size, cols.size, dtype=torch.bool)
    (a, b), (c, d) = rows.zone, cols.zone
    mask[a:b, c:d] = True
    for lo, hi in rows.rings():
        mask[lo:hi, :] = True
    for lo, hi in cols.rings():
        mask[:, lo:hi] = True
    return mask


@pytest.mark.parametrize("height, width", [(1, 1), (7, 30), (13, 5), (33, 27)])
def test_pixels_outside_the_varying_set_hold_the_constant(height, width):
    gen = torch.Generator().manual_seed(height * 100 + width)
    x = torch.randn(1, 3, height, width, generator=gen, dtype=torch.float64) * 50
    h, const, rows, cols, cin = x, None, None, None, 3
    constant_pixels = 0
    for kind, cout in STACK:
        if kind == "pool":
            h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            rows, cols = pool_axis(rows, 2, 2), pool_axis(cols, 2, 2)
        else:
            w = torch.randn(cout, cin, 3, 3, generator=gen, dtype=torch.float64) * 0.3
            b = torch.randn(cout, generator=gen, dtype=torch.float64) * 5 + 3
            if kind == "first":
                h = F.relu(F.conv2d(h, w, b, padding=100))
                rows, cols = padded_conv_axis(height, 100, 3), padded_conv_axis(width, 100, 3)
                const = b.relu()
            else:
                h = F.relu(F.conv2d(h, w, b, padding=1))
                rows, cols = same_conv_axis(rows, 1), same_conv_axis(cols, 1)
                const = (b + w.sum((2, 3)) @ const).relu()
            cin = cout
        assert (rows.size, cols.size) == tuple(h.shape[2:]), kind
        outside = ~_varying_mask(rows, cols)
        constant_pixels += int(outside.sum())
        expected = const.view(-1, 1).expand(-1, int(outside.sum()))
        torch.testing.assert_close(h[0][:, outside], expected, rtol=1e-12, atol=1e-12)
    assert constant_pixels > 0


def test_the_zone_is_where_the_image_is_seen():
    axis = padded_conv_axis(500, 100, 3)
    assert axis == Axis(698, (98, 600), 0, 0)
    grown = same_conv_axis(axis, 1)
    assert grown == Axis(698, (97, 601), 1, 1)
    pooled = pool_axis(grown, 2, 2)
    assert pooled.size == 349 and pooled.zone == (48, 301) and (pooled.lo, pooled.hi) == (1, 1)


def test_interval_helpers():
    assert merge([(5, 7), (0, 2), (8, 9)], min_gap=2) == [(0, 2), (5, 9)]
    assert complement([(0, 2), (5, 9)], 12) == [(2, 5), (9, 12)]
    assert Axis(10, (3, 5), 1, 2).varying() == [(0, 1), (3, 5), (8, 10)]
    assert Axis(10, (3, 5), 1, 2).varying(min_gap=3) == [(0, 5), (8, 10)]
