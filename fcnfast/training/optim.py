"""What each SGD step optimises: the loss normalisation over ranks, parameter groups, lr schedule.

**Batches and processes.** The loss is normalised over the *global* batch and each rank's loss
is multiplied by ``world_size`` to cancel DDP's gradient averaging, so a run on W processes
with batch B takes the same steps as one process with batch W*B (up to float summation order).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor, nn

__all__ = ["LOSS_DESCRIPTIONS", "LOSS_NORMALIZATIONS", "LR_POLICIES", "lr_factor", "param_groups", "scale_loss"]

#: Loss normalisation -> what the reported loss is (for messages).
LOSS_DESCRIPTIONS: Dict[str, str] = {
    "image": "summed per image",
    "pixel": "averaged over pixels",
    "none": "summed over the batch",
}
LOSS_NORMALIZATIONS = tuple(LOSS_DESCRIPTIONS)
LR_POLICIES = ("fixed", "poly")


def param_groups(model: nn.Module, lr: float, weight_decay: float, *, bias_lr_mult: float = 2.0,
                 bias_weight_decay: float = 0.0) -> List[Dict[str, Any]]:
    """Two SGD groups, as Caffe's FCN solvers: weights (lr, wd) and biases (bias_lr_mult*lr, no decay).
    Frozen parameters (the bilinear upsampling filters) are left out. Each group keeps its
    multiplier in ``lr_mult`` so schedules scale both."""
    weights, biases = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (biases if name.endswith("bias") else weights).append(p)
    return [
        {"params": weights, "lr": lr, "weight_decay": weight_decay, "lr_mult": 1.0, "name": "weights"},
        {"params": biases, "lr": lr * bias_lr_mult, "weight_decay": bias_weight_decay, "lr_mult": bias_lr_mult,
         "name": "biases"},
    ]


def lr_factor(policy: str, iteration: int, iterations: int, power: float = 0.9) -> float:
    """Multiplier of the base lr for 0-based ``iteration`` of ``iterations``: 1 ("fixed") or
    ``(1 - iteration/iterations) ** power`` ("poly")."""
    if policy == "fixed":
        return 1.0
    if policy == "poly":
        return max(0.0, 1.0 - iteration / iterations) ** power
    raise ValueError(f"unknown lr policy {policy!r}; choose from {LR_POLICIES}")


def scale_loss(local_sum: Tensor, global_sum: Tensor, global_count: Tensor, *, world_size: int,
               normalization: str, global_batch: int) -> Tuple[Tensor, Tensor]:
    """(loss to backpropagate on this rank, loss of the global batch) from this rank's summed
    pixel loss and the sums over all ranks of the pixel losses and valid-pixel counts.

    The global loss is ``global_sum / d`` with ``d`` = valid pixels ("pixel"), images
    ("image") or 1 ("none") of the global batch. DDP averages gradients over ``world_size``
    ranks, so each rank backpropagates ``local_sum * world_size / d``: the average of those
    gradients is exactly the gradient of the global loss that one process holding the whole
    global batch would compute.
    """
    if normalization == "pixel":
        denom = global_count.clamp(min=1.0)
    elif normalization == "image":
        denom = torch.full((), float(global_batch), dtype=local_sum.dtype, device=local_sum.device)
    elif normalization == "none":
        denom = torch.ones((), dtype=local_sum.dtype, device=local_sum.device)
    else:
        raise ValueError(f"unknown loss normalization {normalization!r}; choose from {LOSS_NORMALIZATIONS}")
    loss = local_sum * (world_size / denom) if world_size > 1 else local_sum / denom
    return loss, global_sum.detach() / denom
