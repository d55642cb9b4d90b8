"""fcnfast.devices.resolve_device and fcnfast.wrappers.unwrap_model: the shared helpers of training,
evaluation, the commands and optimize()."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcnfast.devices import resolve_device
from fcnfast.wrappers import unwrap_model


@pytest.mark.parametrize("requested", ["auto", None, "", "AUTO"])
def test_auto_is_cuda_when_there_is_a_gpu_else_cpu(requested):
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(requested).type == want


def test_explicit_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("requested, message", [
    ("gpu", "not one of auto, cpu, cuda or cuda:N"),
    ("meta", "not supported"),
    ("cuda:banana", "not one of"),
])
def test_bad_requests_name_the_request(requested, message):
    with pytest.raises(ValueError, match=message) as info:
        resolve_device(requested)
    assert repr(requested) in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("requested", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_clear_error(requested):
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        resolve_device(requested, local_rank=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_takes_the_local_rank():
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_unwrap_model_strips_data_parallel_and_compile():
    inner = nn.Linear(2, 2)
    assert unwrap_model(inner) is inner
    assert unwrap_model(nn.DataParallel(inner)) is inner
    compiled = torch.compile(nn.DataParallel(inner))  # compiles lazily: nothing runs here
    assert unwrap_model(compiled) is inner
