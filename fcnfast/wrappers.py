"""The model inside torch's wrappers: what training saves, evaluates and ``optimize`` converts.

Depends on torch only.
"""

from __future__ import annotations

from torch import nn

__all__ = ["unwrap_model"]

# A wrapper nested deeper than this is a cycle, not a model.
_MAX_DEPTH = 8


def unwrap_model(model: nn.Module) -> nn.Module:
    """``model`` without its torch wrappers: DataParallel / DistributedDataParallel (``.module``)
    and ``torch.compile``'s OptimizedModule (``._orig_mod``), however they are nested.
    A module that is not wrapped is returned as it is."""
    for _ in range(_MAX_DEPTH):
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            break
    return model
