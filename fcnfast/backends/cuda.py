"""The cuda backend: the CUDA C++ kernels in ``fcnfast._cuda`` (fp32, fp16, bf16; fp32 accumulation).

Kernels run on PyTorch's current stream of the tensors' device; the stream handle is
passed as an integer because ``fcnfast._cuda`` does not link libtorch.
"""

from __future__ import annotations

import torch

from ._abi import ExtensionBackend
from .base import Availability, State


class CudaBackend(ExtensionBackend):
    name = "cuda"
    device_types = ("cuda",)
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    module_name = "_cuda"
    kernel_label = "CUDA C++"
    grad_w_accumulates = True

    def _describe(self, module):
        archs = module.build_info()["archs"]
        # The module links the CUDA runtime statically: it can see a device torch cannot, and back.
        count, error = module.device_count()
        if count == 0:
            return Availability(State.ABSENT,
                                f"fcnfast._cuda is built ({archs}) but sees no CUDA device: {error or 'none found'}")
        if not torch.cuda.is_available():
            return Availability(State.ABSENT, "fcnfast._cuda sees a device but this torch build has no CUDA")
        return Availability(State.READY, f"fcnfast._cuda built for {archs}, {count} device(s)")

    def _launch_arg(self, device):
        return torch.cuda.current_stream(device).cuda_stream


BACKEND = CudaBackend()
