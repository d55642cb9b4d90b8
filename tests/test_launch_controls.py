"""The launch switches: FCNFAST_TRITON_AUTOTUNE (and the autotune key) and FCNFAST_CUDA_SYNC_CHECK."""

import pytest
import torch

import fcnfast
from fcnfast.backends import _sync_check

from conftest import HAS_CUDA, gpu_backends


@pytest.fixture()
def triton_launcher():
    ok, reason = fcnfast.backends.supports("triton", "cuda" if HAS_CUDA else "cpu", torch.float32)
    if not ok:
        pytest.skip(reason)
    from fcnfast.backends import triton as launcher

    return launcher


def test_autotune_switch_parses_and_rejects_bad_values(triton_launcher, monkeypatch):
    monkeypatch.setenv("FCNFAST_TRITON_AUTOTUNE", "0")
    assert triton_launcher.autotune_enabled() is False
    monkeypatch.setenv("FCNFAST_TRITON_AUTOTUNE", "yes")
    with pytest.raises(ValueError, match="FCNFAST_TRITON_AUTOTUNE must be 0 or 1, got 'yes'"):
        triton_launcher.autotune_enabled()
    monkeypatch.delenv("FCNFAST_TRITON_AUTOTUNE")
    # on by default where kernels are compiled; never under the interpreter
    assert triton_launcher.autotune_enabled() is (not fcnfast.backends.triton_interpreted())


def test_autotune_key_separates_tiny_calls_from_fcn_sizes(triton_launcher):
    from fcnfast.kernels import upsample_crop_add as K

    for key in (K._KEY, K._FWD_KEY):
        assert "TUNE_BUCKET" in key
    assert "HAS_SKIP" in K._FWD_KEY
    tiny = triton_launcher.tune_bucket(1 * 10 * 12)
    upscore8_b1 = triton_launcher.tune_bucket(1 * 500 * 500)
    upscore8_b8 = triton_launcher.tune_bucket(8 * 500 * 500)
    assert len({tiny, upscore8_b1, upscore8_b8}) == 3
    if not fcnfast.backends.triton_interpreted():  # compiled: the kernels are Autotuners with that key
        assert "TUNE_BUCKET" in K._upsample_crop_add_fwd_kernel.keys
        assert "HAS_SKIP" in K._upsample_crop_add_fwd_depthwise_kernel.keys


def test_sync_check_switch(monkeypatch):
    monkeypatch.delenv("FCNFAST_CUDA_SYNC_CHECK", raising=False)
    assert _sync_check.enabled() is False
    monkeypatch.setenv("FCNFAST_CUDA_SYNC_CHECK", "1")
    assert _sync_check.enabled() is True
    _sync_check.after_launch("k", torch.device("cpu"))  # a no-op for CPU tensors
    monkeypatch.setenv("FCNFAST_CUDA_SYNC_CHECK", "on")
    with pytest.raises(ValueError, match="FCNFAST_CUDA_SYNC_CHECK must be 0 or 1"):
        _sync_check.enabled()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("backend", gpu_backends())
def test_sync_check_runs_every_gpu_launch(backend, monkeypatch):
    calls = []
    real = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    monkeypatch.setenv("FCNFAST_CUDA_SYNC_CHECK", "1")
    x = torch.randn(1, 3, 5, 6, device="cuda", requires_grad=True)
    w = torch.randn(3, 3, 4, 4, device="cuda", requires_grad=True)
    fcnfast.upsample_crop_add(x, w, 2, backend=backend).sum().backward()
    assert len(calls) >= 3  # forward, grad_x, grad_w
