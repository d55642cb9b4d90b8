"""fcnfast.band: rows outside the zone are the same for every image, in maps computed in full.

A small float64 stack with FCN's geometry (a 3x3 conv padded by 100, 3x3 'same' convs, 2x2/2
ceil-mode pools) and random biases, run on two different images of the same size: the rows the
band puts outside the zone must be equal bit for bit, the zone's first and last rows must differ.
"""

import pytest
import torch
import torch.nn.functional as F

from fcnfast.band import Band, padded_conv_band, pool_band, same_conv_band

# (kind, channels): the conv padded by 100, then FCN's pattern of same convs and pools.
STACK = [("first", 4), ("conv", 5), ("pool", 0), ("conv", 4), ("conv", 3), ("pool", 0), ("conv", 4), ("pool", 0),
         ("conv", 3), ("pool", 0)]


@pytest.mark.parametrize("height, width", [(1, 1), (7, 30), (13, 5), (33, 27), (42, 3)])
def test_rows_outside_the_zone_do_not_depend_on_the_image(height, width):
    gen = torch.Generator().manual_seed(height * 100 + width)
    images = [torch.randn(1, 3, height, width, generator=gen, dtype=torch.float64) * 50 for _ in range(2)]
    maps, band, cin = images, None, 3
    for kind, cout in STACK:
        if kind == "pool":
            maps = [F.max_pool2d(h, 2, 2, ceil_mode=True) for h in maps]
            band = pool_band(band, 2, 2)
        else:
            w = torch.randn(cout, cin, 3, 3, generator=gen, dtype=torch.float64) * 0.3
            b = torch.randn(cout, generator=gen, dtype=torch.float64) * 5 + 1
            pad = 100 if kind == "first" else 1
            maps = [F.relu(F.conv2d(h, w, b, padding=pad)) for h in maps]
            band = padded_conv_band(height, 100, 3) if kind == "first" else same_conv_band(band, 1)
            cin = cout
        assert band.size == maps[0].shape[2], kind
        (a, b), (one, two) = band.zone, maps
        assert torch.equal(one[:, :, :a], two[:, :, :a]) and torch.equal(one[:, :, b:], two[:, :, b:]), kind
        assert not torch.equal(one[:, :, a], two[:, :, a]) and not torch.equal(one[:, :, b - 1], two[:, :, b - 1])


def test_the_zone_at_500_rows():
    band = padded_conv_band(500, 100, 3)
    assert band == Band(698, (98, 600)) and (band.above, band.below) == (98, 98)
    band = same_conv_band(band, 1)
    assert band.zone == (97, 601)
    band = pool_band(band, 2, 2)
    assert band == Band(349, (48, 301))
    assert pool_band(Band(7, (2, 5)), 2, 2) == Band(4, (1, 3))  # ceil mode: the last window is one row
