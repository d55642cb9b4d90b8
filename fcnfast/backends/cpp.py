"""The cpp backend: the C++ CPU kernels in ``fcnfast._C`` (fp32 and fp64, OpenMP)."""

from __future__ import annotations

import torch

from ..host_memory import LARGE_TENSOR_BYTES, keep_freed_memory
from ._abi import ExtensionBackend
from .base import Availability, State


class CppBackend(ExtensionBackend):
    name = "cpp"
    device_types = ("cpu",)
    dtypes = (torch.float32, torch.float64)
    module_name = "_C"
    kernel_label = "C++"
    grad_w_accumulates = False
    forward_checks_finite = True  # flag_nonfinite_rows in csrc/cpu/upsample_crop_add_kernels.h

    def _describe(self, module):
        info = module.build_info()
        omp = f"OpenMP, up to {info['max_threads']} threads" if info["openmp"] else "no OpenMP (1 thread)"
        return Availability(State.READY, f"fcnfast._C built ({omp})")

    def _launch_arg(self, device):
        return torch.get_num_threads()

    def forward(self, x, weight, bias, skip, geom, depthwise):
        # A large output freed and allocated again would page-fault in anew at every call
        # (glibc trims or unmaps it): keep freed blocks for reuse (fcnfast.host_memory).
        if geom.N * geom.Cout * geom.H * geom.W * x.element_size() >= LARGE_TENSOR_BYTES:
            keep_freed_memory()
        return super().forward(x, weight, bias, skip, geom, depthwise)


BACKEND = CppBackend()
