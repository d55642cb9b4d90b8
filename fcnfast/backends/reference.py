"""The reference backend: ``fcnfast.reference`` (plain PyTorch ops) behind the backend contract."""

from __future__ import annotations

import torch

from ..geometry import SUPPORTED_DTYPES
from ..reference import reference_window
from .base import Availability, Backend, State


class ReferenceBackend(Backend):
    """Runs wherever PyTorch does, in every dtype the op accepts; the judge of the others."""

    name = "reference"
    device_types = ("cpu", "cuda")
    dtypes = SUPPORTED_DTYPES

    def _probe(self):
        return Availability(State.READY, "pure PyTorch")

    def forward(self, x, weight, bias, skip, geom, depthwise):
        # depthwise changes nothing here: conv_transpose2d multiplies the zeros off the diagonal too.
        return reference_window(x, weight, bias, skip, geom)

    def backward(self, grad_out, x, weight, geom, depthwise, need_input, need_weight):
        # ATen's own transposed-convolution backward of grad_out padded to the full output.
        full_h, full_w = geom.full_size
        grad_full = torch.nn.functional.pad(
            grad_out, (geom.ox, full_w - geom.ox - geom.W, geom.oy, full_h - geom.oy - geom.H))
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_full, x, weight, None, [geom.sh, geom.sw], [0, 0], [1, 1], True, [0, 0], 1,
            [need_input, need_weight, False],
        )
        return (grad_x if need_input else None), (grad_w if need_weight else None)


BACKEND = ReferenceBackend()
