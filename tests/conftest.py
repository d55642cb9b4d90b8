"""Shared test setup.

Without a GPU, Triton kernels run under its interpreter: TRITON_INTERPRET=1 must be set
before any @triton.jit is decorated, so it is set here, before fcnfast is imported.
FCNFAST_REQUIRE_BACKENDS (set by .ci/run) turns an unavailable backend from a skip into a
failure, so a broken build cannot hide behind skipped tests.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import fcnfast  # noqa: E402
from fcnfast.backends import BACKENDS  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
REQUIRED = [b for b in os.environ.get("FCNFAST_REQUIRE_BACKENDS", "").split(",") if b]


def pytest_sessionstart(session):
    available = fcnfast.available_backends()
    missing = {b: available[b][1] for b in REQUIRED if not available.get(b, (False, "unknown backend"))[0]}
    if missing:
        raise pytest.UsageError(f"FCNFAST_REQUIRE_BACKENDS: not available: {missing}")


def pytest_report_header(config):
    lines = [f"fcnfast backends (cuda={HAS_CUDA}):"]
    for name, (ok, why) in fcnfast.available_backends().items():
        lines.append(f"  {name}: {'yes' if ok else 'no'} - {why}")
    return lines


def backend_device_params():
    """pytest.param((backend, device)) for every backend x device pair, each run where it can:
    a pair that cannot run on this machine skips with the reason, and CUDA pairs carry the
    ``gpu`` mark. (On a GPU machine the cpp/cpu pairs run too, beside the GPU ones.)"""
    params = []
    for device in ("cpu", "cuda"):
        for name in BACKENDS:
            ok, reason = fcnfast.backends.supports(name, device, torch.float32)
            marks = [] if ok else [pytest.mark.skip(reason=f"{name} on {device}: {reason}")]
            if device == "cuda":
                marks.append(pytest.mark.gpu)
            params.append(pytest.param(name, device, id=f"{name}-{device}", marks=marks))
    return params


def gpu_backends():
    """pytest.param per GPU backend (triton, cuda), ``gpu``-marked, skipped with the reason where it cannot run."""
    params = []
    for name in ("triton", "cuda"):
        ok, reason = fcnfast.backends.supports(name, "cuda", torch.float32)
        marks = [pytest.mark.gpu] + ([] if ok else [pytest.mark.skip(reason=f"{name} on cuda: {reason}")])
        params.append(pytest.param(name, id=name, marks=marks))
    return params


# fp32 on the GPU references cuDNN: compare against true fp32, not TF32.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(autouse=True)
def no_child_process_left():
    """A test must not leave a multiprocessing child (a DataLoader worker) running: training's
    workers ignore SIGTERM, so one left behind makes the interpreter wait for it at exit forever.
    A leftover is killed, and the test that left it fails."""
    import multiprocessing

    yield
    left = multiprocessing.active_children()
    for child in left:
        child.kill()
        child.join(5)
    assert not left, f"child processes left running: {left}"
