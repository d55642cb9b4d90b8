"""fcnfast.upsample_crop_add forward: every backend against the reference, and the reference
against conv_transpose2d + slice + add."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fcnfast
from fcnfast.reference import bilinear_weight, upsample_crop_add_reference

from conftest import backend_device_params, gpu_backends
from op_cases import INTERPRETED, Case, assert_matches_reference, cpu_isas, make_inputs, rank1_filters, use_cpu_isa

CASES = [
    # FCN head stages in miniature: k = 2s, Caffe offsets.
    Case(1, 3, 3, 4, 5, (4, 4), (2, 2), skip_margin=(5, 5)),
    Case(3, 4, 4, 6, 5, (4, 4), (2, 2), skip_margin=(9, 9), bias=True),
    Case(1, 5, 5, 3, 4, (16, 16), (8, 8), offset=(31, 31), size=(1, 1)),
    Case(2, 3, 3, 4, 4, (16, 16), (8, 8), offset=(5, 9), size=(17, 13), skip_margin=(1, 2)),
    Case(1, 2, 2, 2, 3, (32, 32), (16, 16), offset=(27, 27), size=(5, 19)),
    Case(1, 2, 3, 2, 2, (64, 64), (32, 32), offset=(19, 19), size=(40, 33), bias=True),
    # k != 2s, odd offsets, Cin != Cout, rectangular kernels and strides.
    Case(2, 3, 5, 2, 2, (63, 63), (32, 32), offset=(3, 7), size=(29, 31), skip_margin=(0, 3)),
    Case(3, 4, 2, 7, 6, (3, 3), (2, 2), offset=(1, 0), bias=True, skip_margin=(2, 0)),
    Case(1, 3, 4, 5, 4, (5, 3), (3, 2), offset=(2, 1)),
    Case(2, 2, 3, 6, 7, (1, 1), (1, 1)),
    Case(1, 6, 6, 5, 5, (4, 4), (2, 2), offset=(1, 1), size=(7, 9), bilinear=True, skip_margin=(3, 4)),
    Case(2, 4, 4, 4, 4, (16, 16), (8, 8), offset=(9, 5), size=(20, 21), bilinear=True, bias=True),
    # Large windows (not for the Triton interpreter).
    Case(1, 21, 21, 16, 16, (4, 4), (2, 2), skip_margin=(5, 5), bilinear=True),
    Case(1, 7, 5, 16, 17, (16, 16), (8, 8), offset=(31, 27), size=(97, 113), skip_margin=(9, 9), bias=True),
    Case(3, 21, 21, 16, 17, (16, 16), (8, 8), offset=(31, 31), size=(97, 113), bilinear=True),
]

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _runs(backend, dtype, device):
    return fcnfast.backends.supports(backend, device, dtype)[0]


def _maybe_skip(backend, dtype, device, case=None):
    ok, reason = fcnfast.backends.supports(backend, device, dtype)
    if not ok:
        pytest.skip(reason)
    if backend == "triton" and device == "cpu" and case is not None and not case.interpretable():
        pytest.skip("too slow for the Triton interpreter (runs on GPU; cpp covers it on CPU)")


# --- the reference itself ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reference_equals_conv_transpose_slice_add(case):
    x, weight, kw = make_inputs(case, torch.float64)
    out = upsample_crop_add_reference(x, weight, case.s, **kw)
    full = F.conv_transpose2d(x, weight, kw.get("bias"), stride=case.s)
    H, W = case.out_size
    oy, ox = case.offset
    expected = full[:, :, oy:oy + H, ox:ox + W]
    if "skip" in kw:
        sy, sx = case.skip_margin
        expected = expected + kw["skip"][:, :, sy:sy + H, sx:sx + W]
    assert torch.equal(out, expected)
    assert out.is_contiguous()


# --- every backend vs the reference ---------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("backend, device", backend_device_params())
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_backend_matches_reference(case, backend, dtype, device):
    _maybe_skip(backend, dtype, device, case)
    if backend == "triton" and INTERPRETED and dtype == torch.float16 and not case.interpretable(max_kernel=8):
        pytest.skip("interpreted fp16 with k > 8: covered by fp32")
    x, weight, kw = make_inputs(case, dtype, device)
    for depthwise in ([None, True, False] if case.bilinear else [None]):
        out = fcnfast.upsample_crop_add(x, weight, case.s, depthwise=depthwise, backend=backend, **kw)
        assert out.device.type == device
        assert_matches_reference(out, x, weight, case.s, kw, what=f"{backend} depthwise={depthwise}")


LAYOUT_CASES = [CASES[1], CASES[3], CASES[7], CASES[11]]


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
@pytest.mark.parametrize("backend, device", backend_device_params())
@pytest.mark.parametrize("case", LAYOUT_CASES, ids=lambda c: c.id)
def test_non_contiguous_inputs(case, backend, layout, device):
    _maybe_skip(backend, torch.float32, device, case)
    x, weight, kw = make_inputs(case, torch.float32, device, layout=layout)
    assert not x.is_contiguous()
    out = fcnfast.upsample_crop_add(x, weight, case.s, backend=backend, **kw)
    assert_matches_reference(out, x, weight, case.s, kw, what=f"{backend} {layout}")


@pytest.mark.parametrize("backend, device", backend_device_params())
def test_empty_batch(backend, device):
    _maybe_skip(backend, torch.float32, device)
    x = torch.randn(0, 3, 4, 4, device=device)
    w = torch.randn(3, 2, 4, 4, device=device)
    skip = torch.randn(0, 2, 20, 20, device=device)
    out = fcnfast.upsample_crop_add(x, w, 2, skip=skip, skip_offset=1, size=(5, 6), backend=backend)
    assert out.shape == (0, 2, 5, 6)


# --- hypothesis fuzz ------------------------------------------------------------------------


@st.composite
def random_calls(draw, max_out=48):
    s = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    k = (draw(st.sampled_from([2 * s[0], s[0], s[0] + 1, 2 * s[0] + 1, 1])),
         draw(st.sampled_from([2 * s[1], s[1], s[1] + 3, 1])))
    Hin, Win = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    full = ((Hin - 1) * s[0] + k[0], (Win - 1) * s[1] + k[1])
    oy, ox = draw(st.integers(0, full[0] - 1)), draw(st.integers(0, full[1] - 1))
    H = draw(st.integers(1, min(full[0] - oy, max_out)))
    W = draw(st.integers(1, min(full[1] - ox, max_out)))
    case = Case(
        N=draw(st.integers(1, 2)), Cin=draw(st.integers(1, 5)), Cout=draw(st.integers(1, 5)), Hin=Hin, Win=Win,
        k=k, s=s, offset=(oy, ox), size=(H, W),
        skip_margin=draw(st.none() | st.tuples(st.integers(0, 4), st.integers(0, 4))), bias=draw(st.booleans()),
    )
    layout = draw(st.sampled_from(["contiguous", "channels_last", "sliced"]))
    return case, layout, draw(st.integers(0, 2**16))


def _fuzz(backend, case, layout, seed):
    x, weight, kw = make_inputs(case, torch.float32, layout=layout, seed=seed)
    out = fcnfast.upsample_crop_add(x, weight, case.s, backend=backend, **kw)
    assert_matches_reference(out, x, weight, case.s, kw, what=f"{backend} {case.id} {layout}")


@pytest.mark.skipif(not _runs("cpp", torch.float32, "cpu"), reason="cpp backend not available")
@pytest.mark.parametrize("isa", cpu_isas())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=random_calls())
def test_fuzz_cpp(isa, call):
    with use_cpu_isa(isa):
        _fuzz("cpp", *call)


@st.composite
def random_depthwise_calls(draw, max_out=40):
    """Channel-diagonal weights (random, exactly rank-1, rank-1 up to rounding, or FCN's
    bilinear) forced onto the depthwise path, over the strides whose vectors each read one input
    column per tap (8 in fp32, 4 in fp64: the CPU's dedicated depthwise rows, and their
    separable form for exactly rank-1 filters) and others; windows shifted by every phase, down
    to one column, so both partial vectors at a row's ends are exercised."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    s = draw(st.sampled_from([8 if dtype == torch.float32 else 4, 2, 3, 16]))
    k = draw(st.sampled_from([2 * s, s, s + 1, 2 * s - 3]))
    kind = draw(st.sampled_from(["diagonal", "bilinear", "rank1", "rank1-rounded"]))
    Hin, Win = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    full = ((Hin - 1) * s + k, (Win - 1) * s + k)
    oy, ox = draw(st.integers(0, full[0] - 1)), draw(st.integers(0, full[1] - 1))
    H = draw(st.integers(1, min(full[0] - oy, max_out)))
    W = draw(st.integers(1, min(full[1] - ox, max_out)))
    C = draw(st.integers(1, 4))
    case = Case(N=draw(st.integers(1, 2)), Cin=C, Cout=C, Hin=Hin, Win=Win, k=(k, k), s=(s, s), offset=(oy, ox),
                size=(H, W), skip_margin=draw(st.none() | st.tuples(st.integers(0, 4), st.integers(0, 4))),
                bias=draw(st.booleans()), bilinear=kind == "bilinear", diagonal=kind == "diagonal")
    layout = draw(st.sampled_from(["contiguous", "channels_last", "sliced"]))
    return case, kind, dtype, layout, draw(st.integers(0, 2**16))


def _rank1_weight(case, dtype, seed, exact):
    """Channel-diagonal outer(a, b) filters. Exact: eighths, with b's largest entry +-1, so the
    products are exact and the filters factor bit for bit; else outer products of random floats,
    rounded to ``dtype`` (rank-1 only up to rounding)."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.zeros(case.Cin, case.Cout, *case.k, dtype=dtype)
    for c in range(case.Cin):
        if exact:
            a = torch.randint(-8, 9, (case.k[0],), generator=g).to(dtype) / 8
            b = torch.randint(-8, 9, (case.k[1],), generator=g).to(dtype) / 8
            b[int(torch.randint(case.k[1], (1,), generator=g))] = 1.0
        else:
            a, b = torch.randn(2, case.k[0], generator=g, dtype=torch.float64)
        weight[c, c] = torch.outer(a, b).to(dtype)
    return weight


@pytest.mark.skipif(not _runs("cpp", torch.float32, "cpu"), reason="cpp backend not available")
@pytest.mark.parametrize("isa", cpu_isas())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=random_depthwise_calls())
def test_fuzz_cpp_depthwise(isa, call):
    case, kind, dtype, layout, seed = call
    x, weight, kw = make_inputs(case, dtype, layout=layout, seed=seed)
    if kind.startswith("rank1"):
        weight = _rank1_weight(case, dtype, seed, exact=kind == "rank1")
    # Exactly rank-1 filters take the separable rows where the set has them; FCN's bilinear
    # ones are (k = 2s, s a power of two: their taps are odd multiples of 1/2s).
    s = case.s[0]
    if kind == "rank1" or (kind == "bilinear" and case.k[0] == 2 * s and s & (s - 1) == 0):
        assert rank1_filters(weight)
    with use_cpu_isa(isa):
        out = fcnfast.upsample_crop_add(x, weight, case.s, depthwise=True, backend="cpp", **kw)
    assert_matches_reference(out, x, weight, case.s, kw, what=f"cpp[{isa}] depthwise {kind} {case.id} {layout} {dtype}")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("backend", gpu_backends())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(call=random_calls())
def test_fuzz_gpu(backend, call):
    case, layout, seed = call
    x, weight, kw = make_inputs(case, torch.float32, "cuda", layout=layout, seed=seed)
    out = fcnfast.upsample_crop_add(x, weight, case.s, backend=backend, **kw)
    assert_matches_reference(out, x, weight, case.s, kw, what=f"{backend} {case.id} {layout}")


@pytest.mark.skipif(not _runs("triton", torch.float32, "cpu"), reason="triton (interpreter) not available")
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_calls(max_out=24))
def test_fuzz_triton_interpreter(call):
    _fuzz("triton", *call)


# --- depthwise detection ---------------------------------------------------------------------


def test_depthwise_detection_is_cached_per_version_and_follows_in_place_updates():
    from fcnfast.ops import _diagonal_cache

    x = torch.randn(1, 3, 5, 5)
    weight = bilinear_weight(3, 3, 4)
    assert fcnfast.is_channel_diagonal(weight)
    assert _diagonal_cache[weight] == (weight._version, True)
    version = weight._version
    fcnfast.upsample_crop_add(x, weight, 2)
    assert weight._version == version  # no rescan-triggering writes
    with torch.no_grad():
        weight[0, 1, 2, 2] = 0.5  # now dense: the next call must notice
    assert not fcnfast.is_channel_diagonal(weight)
    out = fcnfast.upsample_crop_add(x, weight, 2)
    torch.testing.assert_close(out, upsample_crop_add_reference(x, weight, 2))
    with pytest.raises(ValueError, match="depthwise=True requires"):
        fcnfast.upsample_crop_add(x, weight, 2, depthwise=True)


def test_trained_weights_are_not_depthwise():
    weight = bilinear_weight(4, 4, 4) + 1e-3 * torch.randn(4, 4, 4, 4)
    assert not fcnfast.is_channel_diagonal(weight)
    assert not fcnfast.is_channel_diagonal(torch.zeros(3, 4, 4, 4))  # Cin != Cout


def test_module_repr_shows_depthwise_choice():
    module = fcnfast.UpsampleCropAdd(3, 3, 4, 2, skip_offset=5)
    assert "depthwise=auto->depthwise" in repr(module)
    with torch.no_grad():
        module.weight.add_(0.1)
    assert "depthwise=auto->dense" in repr(module)
    assert "depthwise=dense" in repr(fcnfast.UpsampleCropAdd(3, 3, 4, 2, depthwise=False))


def test_autocast_runs_the_op_in_float32():
    x, skip = torch.randn(1, 3, 4, 5, dtype=torch.bfloat16), torch.randn(1, 3, 14, 14, dtype=torch.bfloat16)
    weight = bilinear_weight(3, 3, 4)  # frozen fp32 filters, as in FCN under AMP
    expected = upsample_crop_add_reference(x.float(), weight, 2, skip=skip.float(), skip_offset=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fcnfast.upsample_crop_add(x, weight, 2, skip=skip, skip_offset=2)
        direct = torch.ops.fcnfast.upsample_crop_add(x, weight, None, skip, [2, 2], [0, 0], [10, 12], [2, 2], -1, None)
    assert out.dtype == direct.dtype == torch.float32
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(direct, expected)
