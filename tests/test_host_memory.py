"""The host-allocator policy (fcnfast.host_memory): when it is applied, and what it asks glibc."""

from __future__ import annotations

import pytest
import torch

import fcnfast
from fcnfast import host_memory
from fcnfast.reference import bilinear_weight


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value.value))
        return 1


@pytest.fixture
def fake_libc(monkeypatch):
    """A fresh process state (policy not applied) whose libc records mallopt calls."""
    libc = FakeLibc()
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda name: libc)
    return libc


def test_policy_keeps_freed_blocks_once_per_process(fake_libc, monkeypatch):
    monkeypatch.delenv(host_memory.KEEP_MEMORY_ENV, raising=False)
    host_memory.keep_freed_memory()
    host_memory.keep_freed_memory()
    # M_TRIM_THRESHOLD (-1) to the maximum, M_MMAP_MAX (-4) to 0, and only the first time
    assert fake_libc.calls == [(-1, 2**31 - 1), (-4, 0)]


def test_environment_opts_out(fake_libc, monkeypatch):
    monkeypatch.setenv(host_memory.KEEP_MEMORY_ENV, "0")
    host_memory.keep_freed_memory()
    assert fake_libc.calls == []


@pytest.mark.skipif(not fcnfast.backends.supports("cpp", "cpu", torch.float32)[0], reason="cpp backend not built")
def test_cpp_backend_applies_it_for_large_outputs_only(monkeypatch):
    from fcnfast.backends import cpp

    applied = []
    monkeypatch.setattr(cpp, "keep_freed_memory", lambda: applied.append(True))
    weight = bilinear_weight(1, 1, 16)
    fcnfast.upsample_crop_add(torch.randn(1, 1, 8, 8), weight, 8, backend="cpp")  # 72x72 output
    assert applied == []
    side = 2048  # a 16 MB float32 output: LARGE_TENSOR_BYTES
    assert side * side * 4 >= host_memory.LARGE_TENSOR_BYTES
    x = torch.randn(1, 1, side // 8, side // 8)
    out = fcnfast.upsample_crop_add(x, weight, 8, offset=4, size=(side, side), backend="cpp")
    assert applied == [True] and out.shape == (1, 1, side, side)
