"""NaN and +-inf in the op's input give conv_transpose2d's outputs on every backend and both paths.

conv_transpose2d multiplies every weight, the zeros included, and 0 * inf = 0 * NaN = NaN. The
depthwise path skips the zero off-diagonal taps, so the op sends a non-finite x down the dense
path (docs/design.md §2); the dense kernels must not skip zero weights either, nor let a masked
load hide a tap conv_transpose2d uses. (Issue 11 #6.)
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fcnfast
from conftest import backend_device_params
from fcnfast.backends import triton_interpreted
from fcnfast.reference import bilinear_weight

INTERPRETED = triton_interpreted()
VALUES = {"nan": float("nan"), "+inf": float("inf"), "-inf": float("-inf")}
# (kernel, stride, Hin, Win, offset, window): FCN's 2x and 8x stages with a crop, and a kernel
# that is not a multiple of the stride.
GEOMETRIES = {"k4s2": (4, 2, 5, 6, 1, (9, 10)), "k16s8": (16, 8, 3, 4, 5, (17, 21)), "k5s2": (5, 2, 4, 5, 0, None)}
# Where the non-finite values go: (channel, row, column), edges and the middle.
SPOTS = ((0, 0, 0), (1, -1, -1), (2, 1, 2))
CHANNELS = 3


def _weight(kind: str, k: int) -> torch.Tensor:
    if kind == "bilinear":
        return bilinear_weight(CHANNELS, CHANNELS, k)
    weight = torch.randn(CHANNELS, CHANNELS, k, k, generator=torch.Generator().manual_seed(1))
    weight[0, 1] = 0.0  # whole zero filters and zero taps: the dense path must still multiply them
    weight[:, :, 0, :] = 0.0
    return weight


def _same_pattern(got: torch.Tensor, want: torch.Tensor) -> None:
    for name, test in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        assert torch.equal(test(got), test(want)), (
            f"{name} at {int(test(got).sum())} outputs, conv_transpose2d has {int(test(want).sum())}")
    finite = torch.isfinite(want)
    torch.testing.assert_close(got[finite], want[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend, device", backend_device_params())
@pytest.mark.parametrize("value", list(VALUES))
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("weights, depthwise", [("bilinear", None), ("bilinear", True), ("bilinear", False),
                                                ("random", None)], ids=["detect", "required", "dense", "dense-random"])
def test_non_finite_input_matches_conv_transpose2d(backend, device, value, geometry, weights, depthwise):
    if backend == "triton" and INTERPRETED and geometry == "k16s8":
        pytest.skip("64 phases are slow in the Triton interpreter; cpp covers k16s8 on the CPU, triton on a GPU")
    k, s, hin, win, offset, size = GEOMETRIES[geometry]
    x = torch.randn(2, CHANNELS, hin, win, generator=torch.Generator().manual_seed(0))
    for c, i, j in SPOTS:
        x[1, c, i, j] = VALUES[value]
    weight = _weight(weights, k)
    bias = torch.randn(CHANNELS, generator=torch.Generator().manual_seed(2))
    full = F.conv_transpose2d(x, weight, bias, stride=s)
    h, w = size or (full.shape[2] - offset, full.shape[3] - offset)
    skip = torch.randn(2, CHANNELS, h + 3, w + 2, generator=torch.Generator().manual_seed(3))
    want = full[:, :, offset:offset + h, offset:offset + w] + skip[:, :, 2:2 + h, 1:1 + w]
    got = fcnfast.upsample_crop_add(x.to(device), weight.to(device), s, offset=offset, size=(h, w),
                                    skip=skip.to(device), skip_offset=(2, 1), bias=bias.to(device),
                                    depthwise=depthwise, backend=backend)
    assert not torch.isfinite(want).all()  # the case is what it claims to be
    _same_pattern(got.cpu(), want)


@pytest.mark.parametrize("backend, device", backend_device_params())
@pytest.mark.parametrize("value", list(VALUES))
def test_non_finite_grad_out_matches_conv_transpose2d_on_the_depthwise_path(backend, device, value):
    """grad_x multiplies grad_out by the weight's zeros too: a non-finite grad_out takes the dense path."""
    k, s, hin, win, offset, size = GEOMETRIES["k4s2"]
    x = torch.randn(1, CHANNELS, hin, win, generator=torch.Generator().manual_seed(0))
    weight = bilinear_weight(CHANNELS, CHANNELS, k)
    grads = []
    for run_backend, run_device in ((backend, device), ("reference", "cpu")):
        xr = x.to(run_device).requires_grad_()
        out = fcnfast.upsample_crop_add(xr, weight.to(run_device), s, offset=offset, size=size, backend=run_backend)
        grad_out = torch.ones_like(out)
        grad_out[0, 1, 3, 4] = VALUES[value]
        out.backward(grad_out)
        grads.append(xr.grad.cpu())
    assert not torch.isfinite(grads[1]).all()
    _same_pattern(*grads)


@pytest.fixture
def path_choices(monkeypatch):
    """The depthwise flag of every reference-backend forward from here on, in call order."""
    from fcnfast import backends

    chosen = []
    reference = backends.get("reference")
    real_forward = type(reference).forward
    monkeypatch.setattr(type(reference), "forward",
                        lambda self, *a: chosen.append(a[-1]) or real_forward(self, *a))
    return chosen


def test_the_depthwise_path_still_serves_finite_inputs(path_choices):
    """The finiteness check only diverts non-finite calls: a finite x keeps the 4-tap path."""
    weight = bilinear_weight(CHANNELS, CHANNELS, 4)
    x = torch.randn(1, CHANNELS, 4, 4)
    fcnfast.upsample_crop_add(x, weight, 2, backend="reference")
    x[0, 0, 0, 0] = float("nan")
    fcnfast.upsample_crop_add(x, weight, 2, backend="reference", depthwise=True)
    assert path_choices == [True, False]


def test_finite_inputs_whose_sum_overflows_take_the_dense_path_and_stay_exact(path_choices):
    """The check is one sum: finite values summing past fp32's range (a false alarm) divert the
    call to the dense path, which gives the same outputs."""
    weight = bilinear_weight(CHANNELS, CHANNELS, 4)
    huge = torch.full((1, CHANNELS, 4, 4), 3e38)
    assert torch.isfinite(huge).all() and not torch.isfinite(huge.sum())
    got = fcnfast.upsample_crop_add(huge, weight, 2, backend="reference")
    want = F.conv_transpose2d(huge, weight, stride=2)
    assert path_choices == [False] and torch.isfinite(want).all()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_cuda_graph_capture_skips_the_finiteness_check(backend):
    """The check needs a host sync, which capture forbids: captured calls keep the depthwise path."""
    ok, why = fcnfast.backends.supports(backend, "cuda", torch.float32)
    if not ok:
        pytest.skip(why)
    weight = bilinear_weight(CHANNELS, CHANNELS, 4, torch.float32).cuda()
    x = torch.randn(1, CHANNELS, 6, 6, device="cuda")
    fcnfast.upsample_crop_add(x, weight, 2, backend=backend)  # warm-up outside the capture
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        out = fcnfast.upsample_crop_add(x, weight, 2, backend=backend)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, F.conv_transpose2d(x, weight, stride=2)[:, :, :out.shape[2], :out.shape[3]])
