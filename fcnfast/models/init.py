"""Random initialisation for demos and benchmarks (no checkpoint needed, deterministic per seed).

FCN's own initialisation zeroes the score layers, so an untrained FCN predicts background
everywhere. :func:`random_init_` gives every convolution random normal weights instead
(He-normal for the VGG backbone, so activations keep their scale through the ReLUs), which
makes the compute realistic for benchmarks and the predictions visibly structured for
``fcnfast segment``; upsampling layers are reset to their frozen bilinear filters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn import UpsampleCropAdd


def _normal_(param: torch.Tensor, std: float, gen: torch.Generator) -> None:
    if param.device.type == "cpu" and param.dtype == torch.float32 and param.is_contiguous():
        param.normal_(0.0, std, generator=gen)  # in place: same values as the copy below
    else:
        param.copy_(torch.empty(param.shape, dtype=torch.float32).normal_(0.0, std, generator=gen))


@torch.no_grad()
def random_init_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill ``model``'s convolutions with random normal weights; reset heads to bilinear. Returns ``model``.

    Backbone convs (conv*, fc6, fc7): N(0, 2/fan_in), biases N(0, 0.01^2). Score layers
    (``score*``): N(0, 1/fan_in), biases N(0, 0.1^2). Values are drawn on the CPU from a
    generator seeded with ``seed``, so the same seed gives the same weights on every device
    and in every process.
    """
    gen = torch.Generator().manual_seed(int(seed))
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            is_score = name.rsplit(".", 1)[-1].startswith("score")
            std = math.sqrt((1.0 if is_score else 2.0) / fan_in)
            _normal_(module.weight, std, gen)
            if module.bias is not None:
                _normal_(module.bias, 0.1 if is_score else 0.01, gen)
        elif isinstance(module, UpsampleCropAdd):
            module.reset_bilinear()
    return model


__all__ = ["random_init_"]
