"""The pybind11 side of the cpp and cuda backends: dtype codes, pointers, strides, geometry,
and the launch sequence both compiled modules share.

``fcnfast._C`` and ``fcnfast._cuda`` export the same three functions with the same arguments
(``csrc/*/module.cpp``) but for the last one: a thread count for the CPU, a ``cudaStream_t``
for CUDA. Neither links libtorch, so tensors cross as data pointers and element strides.
"""

from __future__ import annotations

from typing import List, Optional

import torch

from ..geometry import Geometry
from . import _extensions, _sync_check
from .base import Availability, Backend, device_guard

# Mirrors enum DType in csrc/include/fcnfast/index_math.h.
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
NO_STRIDES = [0, 0, 0, 0]


def ptr(t: Optional[torch.Tensor]) -> int:
    return 0 if t is None else t.data_ptr()


def strides(t: Optional[torch.Tensor]) -> List[int]:
    return NO_STRIDES if t is None else list(t.stride())


def geometry_list(g: Geometry) -> List[int]:
    return [int(v) for v in g]


class ExtensionBackend(Backend):
    """A backend whose kernels live in the pybind11 module ``fcnfast.<module_name>``.

    Subclasses say how the module describes itself (``_describe``) and what the last launch
    argument is (``_launch_arg``). x and skip are passed with their strides; weight, bias and
    grad_out are made contiguous first, as the kernels read them densely.
    """

    module_name: str
    kernel_label: str  # names the kernels in FCNFAST_CUDA_SYNC_CHECK errors
    # True: the weight-gradient kernel accumulates (atomically) into a zero-filled fp32 buffer;
    # False: it overwrites a buffer in x.dtype.
    grad_w_accumulates: bool

    def _probe(self) -> Availability:
        found = _extensions.probe(self.module_name)
        if found.module is None:
            return Availability(found.state, found.reason)
        return self._describe(found.module)

    def _describe(self, module) -> Availability:
        """READY with what was built, or ABSENT when the imported module cannot run here."""
        raise NotImplementedError

    def _launch_arg(self, device: torch.device) -> int:
        """The last argument of every kernel entry point: threads (CPU) or stream (CUDA)."""
        raise NotImplementedError

    def _run(self, function: str, device: torch.device, *args) -> None:
        module, _, reason = _extensions.probe(self.module_name)
        if module is None:
            raise RuntimeError(f"backend {self.name!r} is unavailable: {reason}")
        with device_guard(device):
            getattr(module, function)(*args, self._launch_arg(device))
        _sync_check.after_launch(f"{function} ({self.kernel_label})", device)

    def forward(self, x, weight, bias, skip, geom, depthwise):
        self.check_launch(geom, x, weight, bias=bias, skip=skip, depthwise=depthwise)
        out = torch.empty((geom.N, geom.Cout, geom.H, geom.W), dtype=x.dtype, device=x.device)
        if out.numel() == 0:
            return out
        # The copies stay referenced until this function returns, past the asynchronous
        # kernel's enqueue; the caching allocator then reuses their memory only in stream order.
        weight = weight.contiguous()
        bias = None if bias is None else bias.contiguous()
        self._run("upsample_crop_add_fwd", x.device, geometry_list(geom), DTYPE_CODES[x.dtype], x.data_ptr(),
                  strides(x), weight.data_ptr(), ptr(bias), ptr(skip), strides(skip), out.data_ptr(), bool(depthwise))
        return out

    def backward(self, grad_out, x, weight, geom, depthwise, need_input, need_weight):
        self.check_launch(geom, x, weight, grad_out=grad_out, depthwise=depthwise)
        grad_out = grad_out.contiguous()
        weight_c = weight.contiguous()  # referenced until the launches are enqueued, as in forward
        g, code = geometry_list(geom), DTYPE_CODES[x.dtype]
        grad_x = grad_w = None
        if need_input:
            grad_x = torch.empty((geom.N, geom.Cin, geom.Hin, geom.Win), dtype=x.dtype, device=x.device)
            if grad_x.numel():
                self._run("upsample_crop_add_bwd_input", x.device, g, code, grad_out.data_ptr(), weight_c.data_ptr(),
                          grad_x.data_ptr(), bool(depthwise))
        if need_weight:
            # Accumulated half-precision gradients are reduced in fp32, then rounded once.
            acc_dtype = torch.float32 if self.grad_w_accumulates else x.dtype
            # Zero-filled where the kernel accumulates, and where no launch fills it (N == 0).
            alloc = torch.zeros if self.grad_w_accumulates or geom.N == 0 else torch.empty
            grad_w = alloc(weight.shape, dtype=acc_dtype, device=x.device)
            if geom.N:
                self._run("upsample_crop_add_bwd_weight", x.device, g, code, x.data_ptr(), strides(x),
                          grad_out.data_ptr(), grad_w.data_ptr())
            grad_w = grad_w.to(weight.dtype)
        return grad_x, grad_w
