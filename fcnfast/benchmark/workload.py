"""What is measured: the benchmarked model (checkpoint or seeded random weights) and its input."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ..datasets import MEAN_BGR
from ..models import DEFAULT_MODEL, build_model, load_weights
from ..models.init import random_init_


def build_bench_model(model: str = DEFAULT_MODEL, num_classes: int = 21, weights: Optional[str] = None,
                      seed: int = 0, device: str = "cpu") -> nn.Module:
    """The benchmarked model in eval mode: ``weights`` loaded, else :func:`random_init_` (seeded)."""
    net = build_model(model, num_classes=num_classes, backend="reference")
    if weights:
        load_weights(net, weights)
    else:
        random_init_(net, seed)
    return net.to(device).eval()


def make_input(batch: int, size: Tuple[int, int], seed: int = 0, device: str = "cpu") -> Tensor:
    """A preprocessed-looking batch: uniform 0..255 'pixels' minus the BGR mean, float32."""
    gen = torch.Generator().manual_seed(int(seed) + 1)
    x = torch.rand((batch, 3, *size), generator=gen) * 255.0
    x -= torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    return x.to(device)

