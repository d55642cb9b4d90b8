"""The CPU route of optimize() (fcnfast.cpu_plan): the backbone's three outputs and the scores equal
the module's forward on odd sizes and both height parities, with the band computed once per width
for 0-3 blocks, and the route is on where it can run and says why where it cannot.

Biases are large, so that the band rows are far from zero and a wrong one shows in pool3 and pool4,
which are compared whole (the heads crop their borders away).
"""

import copy

import pytest
import torch

import fcnfast
from fcnfast.cpu_plan import CpuPlan, cpu_plan_reason
from fcnfast.models import FCN8s
from fcnfast.models.init import random_init_

# Odd and even heights (the band rows kept depend on the height's parity at each pool), the same
# width twice (the second call reuses the kept band rows), a batch of two, the smallest image.
SIZES = [(1, 31, 45), (1, 36, 45), (2, 17, 8), (1, 1, 1)]


def _close(out, ref, what):
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 1e-5 * scale + 1e-6, what


@pytest.fixture(scope="module")
def model():
    net = random_init_(FCN8s(), seed=3).eval()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, module in net.named_children():
            if name.startswith("conv"):
                module.bias.copy_(torch.rand(module.bias.shape, generator=gen) * 2)
    return net


@pytest.fixture(scope="module")
def references(model):
    """[(x, the module's backbone outputs, its scores)] per size, computed once."""
    gen = torch.Generator().manual_seed(5)
    out = []
    with torch.inference_mode():
        for n, h, w in SIZES:
            x = torch.randn(n, 3, h, w, generator=gen) * 60
            taps, fc7 = model._trunk(model.layout.streams[0], x)
            out.append((x, (taps[3], taps[4], fc7), model(x)))
    return out


@pytest.mark.parametrize("band_blocks", [0, 1, 3])
def test_backbone_equals_the_module(model, references, band_blocks):
    plan = CpuPlan(model, band_blocks=band_blocks)
    for x, want, scores in references:
        with torch.inference_mode():
            taps, fc7 = plan.backbone(x)
            for name, a, b in zip(("pool3", "pool4", "fc7"), (taps[3], taps[4], fc7), want):
                assert a.shape == b.shape
                _close(a, b, f"{name} at {tuple(x.shape)}, band_blocks={band_blocks}")
            _close(plan(x), scores, f"scores at {tuple(x.shape)}")


def test_band_blocks_end_at_pool3(model):
    with pytest.raises(ValueError, match="band_blocks"):
        CpuPlan(model, band_blocks=4)


def test_optimize_takes_the_route_on_cpu_float32(model):
    fast = fcnfast.optimize(model)
    assert fast.cpu_route_reason is None and fast._cpu_plan is not None
    assert "cpu route: oneDNN" in repr(fast)
    x = torch.randn(1, 3, 23, 19) * 60
    with torch.inference_mode():
        ref = model(x)
        _close(fast(x), ref, "optimize")
        clone = copy.deepcopy(fast)  # packed weights are dropped by copies and packed again
        assert clone._cpu_plan is None
        _close(clone(x), ref, "deepcopy")
        assert clone._cpu_plan is not None


def test_route_off_says_why(model):
    assert "turned off" in fcnfast.optimize(model, cpu_route=False).cpu_route_reason
    assert "float32" in cpu_plan_reason(model, torch.float64, torch.device("cpu"))
    assert "cuda" in cpu_plan_reason(model, torch.float32, torch.device("cuda"))

    class OwnForward(FCN8s):
        def forward(self, x):
            return super().forward(x)

    with torch.device("meta"):
        other = OwnForward()
    assert "own forward" in cpu_plan_reason(other, torch.float32, torch.device("cpu"))
    with pytest.raises(TypeError, match="cpu_route"):
        fcnfast.optimize(model, cpu_route=1)
