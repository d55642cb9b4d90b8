"""The C++ kernels' instruction sets (generic, AVX2, AVX-512): choosing one, and what each
computes. The op tests fuzz every set against the reference; these check the choice itself,
the exact rank-1 detection behind the AVX-512 separable rows, and thread-count independence."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch

import fcnfast
from fcnfast.reference import bilinear_weight, upsample_crop_add_reference

from op_cases import assert_matches_reference, cpu_isas, rank1_filters, use_cpu_isa

pytestmark = pytest.mark.skipif(not cpu_isas(), reason="C++ extension not built")


def _C():
    from fcnfast import _C

    return _C


def test_generic_set_always_runs_and_the_current_one_is_listed():
    isas = cpu_isas()
    assert isas[0] == "generic" and set(isas) <= {"generic", "avx2", "avx512"}
    assert _C().current_isa() in isas


def test_switching_sets_takes_effect_and_unknown_names_are_refused():
    for isa in cpu_isas():
        with use_cpu_isa(isa):
            assert _C().current_isa() == isa
    with pytest.raises(ValueError, match=r"unknown instruction set 'sse9'; choose generic, avx2 or avx512"):
        _C().set_isa("sse9")


@pytest.mark.skipif(len(cpu_isas()) == 3, reason="this CPU runs every set")
def test_a_set_this_cpu_cannot_run_is_refused():
    missing = next(i for i in ("avx2", "avx512") if i not in cpu_isas())
    with pytest.raises(ValueError, match=f"cannot run instruction set '{missing}'"):
        _C().set_isa(missing)


def _isa_in_subprocess(env_value: str) -> subprocess.CompletedProcess:
    code = "import fcnfast._C as C; print(C.current_isa())"
    env = {**os.environ, "FCNFAST_CPU_ISA": env_value}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_environment_variable_caps_the_set():
    done = _isa_in_subprocess("generic")
    assert done.returncode == 0 and done.stdout.strip() == "generic", done.stderr
    bad = _isa_in_subprocess("sse9")
    assert bad.returncode != 0 and "unknown instruction set 'sse9'" in bad.stderr


# --- exact rank-1 detection ---------------------------------------------------------------


def _diagonal(filters: torch.Tensor) -> torch.Tensor:
    C = filters.shape[0]
    weight = torch.zeros(C, C, *filters.shape[1:], dtype=filters.dtype)
    for c in range(C):
        weight[c, c] = filters[c]
    return weight


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [4, 16, 64])  # FCN's upscore2, upscore8, upscore32
def test_fcn_bilinear_filters_factor_exactly(k, dtype):
    assert rank1_filters(bilinear_weight(21, 21, k, dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_filters_that_are_not_exactly_rank1_do_not_factor(dtype):
    g = torch.Generator().manual_seed(0)
    assert not rank1_filters(_diagonal(torch.randn(3, 16, 16, generator=g, dtype=dtype)))
    a, b = torch.randn(2, 16, generator=g, dtype=torch.float64)
    rounded = torch.outer(a, b).to(dtype)  # rank-1 before rounding only
    assert not rank1_filters(_diagonal(rounded[None]))
    exact = _diagonal(bilinear_weight(2, 2, 16, dtype)[[0, 1], [0, 1]])
    exact[1, 1, 3, 5] = 0.5  # one entry off
    assert not rank1_filters(exact)


def test_asymmetric_zero_and_negative_rank1_filters_factor():
    a = torch.tensor([0.5, -1.0, 0.25, 0.0])
    b = torch.tensor([1.0, 0.75, -0.5, 0.125])
    filters = torch.stack([torch.outer(a, b), torch.zeros(4, 4), -torch.outer(b, a)])
    assert rank1_filters(_diagonal(filters))


def test_non_finite_filters_do_not_factor():
    filters = bilinear_weight(1, 1, 4)[0]
    filters[0, 1, 1] = float("nan")
    assert not rank1_filters(_diagonal(filters))


# --- the separable rows ---------------------------------------------------------------------


def _bilinear_head(dtype, batch=2, skip=True, bias=True, seed=0):
    """(x, weight, stride, kwargs): bilinear upsampling by one vector width (8 in fp32, as
    FCN-8s' upscore8 with its crop of 31; 4 in fp64) on a 9x11 input, with skip and bias."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 21, 9, 11, generator=g, dtype=dtype)
    stride = 8 if dtype == torch.float32 else 4
    weight = bilinear_weight(21, 21, 2 * stride, dtype)
    kw = {"offset": 31 if stride == 8 else 3, "size": (37, 45) if stride == 8 else (33, 41)}
    if skip:
        kw.update(skip=torch.randn(batch, 21, 40, 50, generator=g, dtype=dtype), skip_offset=(2, 3))
    if bias:
        kw["bias"] = torch.randn(21, generator=g, dtype=dtype)
    return x, weight, stride, kw


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("isa", cpu_isas())
def test_results_do_not_depend_on_the_thread_count(isa, dtype):
    x, weight, stride, kw = _bilinear_head(dtype)
    threads = torch.get_num_threads()
    outs = []
    try:
        with use_cpu_isa(isa):
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                outs.append(fcnfast.upsample_crop_add(x, weight, stride, depthwise=True, backend="cpp", **kw))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    assert_matches_reference(outs[0], x, weight, stride, kw, what=f"cpp[{isa}] bilinear head")


@pytest.mark.parametrize("isa", cpu_isas())
def test_every_set_matches_the_reference_on_the_fcn8s_head_at_500(isa):
    """FCN-8s' upscore8 at 500x500 (input 70x70, crop 31): full-size rows with both edge
    vectors, where the AVX-512 set takes its separable rows."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 21, 70, 70, generator=g)
    weight = bilinear_weight(21, 21, 16)
    with use_cpu_isa(isa):
        out = fcnfast.upsample_crop_add(x, weight, 8, offset=31, size=(500, 500), backend="cpp")
    want = upsample_crop_add_reference(x.double(), weight.double(), 8, offset=31, size=(500, 500))
    assert ((out.double() - want).abs().max() / want.abs().max()).item() < 1e-6


@pytest.mark.parametrize("offset", range(9))  # every alignment of the first column in its vector
def test_separable_rows_at_every_crop_offset(offset):
    x, weight, stride, kw = _bilinear_head(torch.float32, skip=False)
    kw.update(offset=offset, size=(20, 51))
    out = fcnfast.upsample_crop_add(x, weight, stride, depthwise=True, backend="cpp", **kw)
    assert_matches_reference(out, x, weight, stride, kw, what=f"separable rows at offset {offset}")


# --- non-finite inputs on the depthwise paths -----------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("isa", cpu_isas())
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_each_set_redoes_a_non_finite_input_densely(isa, dtype, layout, value):
    """The cpp backend leaves the finiteness test of x to its depthwise tasks (the op does not
    sum x first): one non-finite value in one channel must reach every channel's outputs that
    tap it, as conv_transpose2d's zero off-diagonal taps make it."""
    x, weight, stride, kw = _bilinear_head(dtype)
    x[1, 5, 4, 6] = value
    if layout == "channels_last":  # strided columns
        x = x.contiguous(memory_format=torch.channels_last)
    with use_cpu_isa(isa):
        out = fcnfast.upsample_crop_add(x, weight, stride, depthwise=True, backend="cpp", **kw)
    want = upsample_crop_add_reference(x, weight, stride, **kw)
    assert (~torch.isfinite(want[1])).any(dim=(1, 2)).all(), "the reference spreads the value to every channel"
    assert torch.equal(torch.isnan(out), torch.isnan(want)) and torch.equal(torch.isinf(out), torch.isinf(want))
    finite = torch.isfinite(want)
    torch.testing.assert_close(out[finite], want[finite])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("column", [0, 20, 36])  # first, second and last (partial) zmm of a 37-wide row
def test_a_non_finite_value_anywhere_in_a_row_is_seen(dtype, column):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 5, 37, generator=g, dtype=dtype)
    x[0, 2, 3, column] = float("nan")
    stride = 8 if dtype == torch.float32 else 4
    weight = bilinear_weight(4, 4, 2 * stride, dtype)
    out = fcnfast.upsample_crop_add(x, weight, stride, depthwise=True, backend="cpp", offset=3)
    want = upsample_crop_add_reference(x, weight, stride, offset=3)
    assert torch.isnan(want).any() and torch.equal(torch.isnan(out), torch.isnan(want))
    finite = torch.isfinite(want)
    torch.testing.assert_close(out[finite], want[finite])


# --- non-temporal stores for outputs larger than the last-level cache ---------------------


@contextmanager
def _stream_from(nbytes: int):
    """Outputs of at least ``nbytes`` take the streamed rows inside the block."""
    before = _C().stream_min_bytes()
    _C().set_stream_min_bytes(nbytes)
    try:
        yield
    finally:
        _C().set_stream_min_bytes(before)


def test_stream_threshold_defaults_to_a_cache_size_and_refuses_negatives():
    assert _C().stream_min_bytes() >= 1 << 20
    with pytest.raises(ValueError, match="stream_min_bytes must be >= 0, got -1"):
        _C().set_stream_min_bytes(-1)


@pytest.mark.skipif("avx512" not in cpu_isas(), reason="streamed rows are part of the AVX-512 set")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width", [1, 5, 15, 16, 17, 29, 45])  # rows shorter than, equal to, and across blocks
@pytest.mark.parametrize("skip_layout", [None, "contiguous", "channels_last"])
def test_streamed_rows_equal_the_cached_ones_bit_for_bit(dtype, width, skip_layout):
    """Every row's start sits at another offset within its 64-byte block (rows of odd widths,
    batch 2): the streamed rows must write the same values, in the same order of sums, as the
    cached ones, including both partial blocks and rows with no whole block."""
    x, weight, stride, kw = _bilinear_head(dtype, skip=skip_layout is not None)
    kw["size"] = (kw["size"][0], width)
    if skip_layout == "channels_last":
        kw["skip"] = kw["skip"].contiguous(memory_format=torch.channels_last)
    with use_cpu_isa("avx512"):
        with _stream_from(1 << 62):
            cached = fcnfast.upsample_crop_add(x, weight, stride, depthwise=True, backend="cpp", **kw)
        with _stream_from(0):
            streamed = fcnfast.upsample_crop_add(x, weight, stride, depthwise=True, backend="cpp", **kw)
    assert torch.equal(streamed, cached)
    assert_matches_reference(streamed, x, weight, stride, kw, what=f"streamed rows, width {width}")


@pytest.mark.skipif("avx512" not in cpu_isas(), reason="streamed rows are part of the AVX-512 set")
def test_streamed_rows_on_the_fcn8s_head_at_500_batch_2():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 21, 70, 70, generator=g)
    weight = bilinear_weight(21, 21, 16)
    with use_cpu_isa("avx512"), _stream_from(0):
        out = fcnfast.upsample_crop_add(x, weight, 8, offset=31, size=(500, 500), backend="cpp")
    want = upsample_crop_add_reference(x.double(), weight.double(), 8, offset=31, size=(500, 500))
    assert ((out.double() - want).abs().max() / want.abs().max()).item() < 1e-6
