"""The compiled modules: shared index math (what the CUDA kernels run too) and the CUDA build."""

import os

import pytest

from fcnfast.backends import _extensions


def _brute_force_taps(o, k, s, n):
    return [(i, o - i * s) for i in range(n) if 0 <= o - i * s < k]


@pytest.fixture(scope="module")
def C():
    module, reason = _extensions.load("_C")
    if module is None:
        pytest.skip(reason)
    return module


def test_tap_range_matches_brute_force(C):
    for k, s in [(4, 2), (16, 8), (32, 16), (64, 32), (63, 32), (3, 2), (5, 3), (1, 1), (2, 3)]:
        for n in (1, 2, 5):
            for o in range(-3, (n - 1) * s + k + 3):
                first, count, k0 = C.tap_range(o, k, s, n)
                taps = [(first + t, k0 - t * s) for t in range(count)]
                assert taps == _brute_force_taps(o, k, s, n), (o, k, s, n)


def test_tap_sweep_steps_through_tap_range(C):
    """The division-free sweep the CPU kernels plan with, from negative starts too."""
    for k, s in [(4, 2), (16, 8), (64, 32), (63, 32), (3, 2), (5, 3), (1, 1), (2, 3)]:
        for n in (1, 2, 5):
            for o0 in (-2 * k - 1, -k, -1, 0, 1, s + 1, 3 * s + 2):
                length = (n - 1) * s + 2 * k + 4
                expected = [tuple(C.tap_range(o0 + i, k, s, n)) for i in range(length)]
                assert [tuple(t) for t in C.tap_sweep(o0, k, s, n, length)] == expected, (o0, k, s, n)


def test_index_math_bindings_refuse_a_zero_stride(C):
    with pytest.raises(ValueError, match="kernel size and stride must be >= 1, got k=4, s=0"):
        C.tap_range(0, 4, 0, 5)
    with pytest.raises(ValueError, match="kernel size and stride must be >= 1, got k=4, s=0"):
        C.tap_sweep(0, 4, 0, 5, 3)
    with pytest.raises(ValueError, match="tap_sweep: n must be >= 0, got -1"):
        C.tap_sweep(0, 4, 2, 5, -1)


def test_phase_decomposition_two_taps_when_k_is_2s(C):
    for s in (2, 8, 16, 32):
        for o in range(s, 5 * s):  # interior positions of a 6-pixel input
            assert C.tap_range(o, 2 * s, s, 6)[1] == 2


def test_kernel_range_matches_brute_force(C):
    for k, s, offset, size in [(4, 2, 5, 7), (16, 8, 31, 20), (3, 2, 0, 4), (63, 32, 19, 50)]:
        for i in range(0, 8):
            begin, end = C.kernel_range(i, k, s, offset, size)
            expected = [kk for kk in range(k) if offset <= i * s + kk < offset + size]
            assert list(range(begin, end)) == expected, (i, k, s, offset, size)


def test_cpu_build_info(C):
    info = C.build_info()
    assert info["openmp"] is True and info["max_threads"] >= 1
    assert info["dtypes"] == ["float32", "float64"]


def test_cuda_module_builds_and_imports_without_a_gpu():
    """CI compiles fcnfast._cuda with nvcc; on a GPU-less machine it must import and say why it can't run."""
    module, reason = _extensions.load("_cuda")
    if module is None:
        if os.environ.get("FCNFAST_REQUIRE_CUDA_BUILD") == "1":
            pytest.fail(f"FCNFAST_REQUIRE_CUDA_BUILD=1 but {reason}")
        pytest.skip(reason)
    info = module.build_info()
    # The SASS targets the build was asked for (setup.py's default when the variable is unset).
    requested = os.environ.get("FCNFAST_CUDA_ARCHS", "80;90").replace(",", ";")
    for arch in (a.strip().replace("sm_", "") for a in requested.split(";") if a.strip()):
        assert arch in info["archs"], (arch, info)
    assert info["cuda_runtime_version"] >= 12000
    count, error = module.device_count()
    import torch

    if not torch.cuda.is_available():
        assert count == 0 and error
    else:  # the GPU this machine has must be among the compiled targets
        major, minor = torch.cuda.get_device_capability()
        assert count == torch.cuda.device_count()
        assert f"{major}{minor}" in info["archs"], (major, minor, info)
