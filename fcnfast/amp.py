"""Mixed precision for training and evaluation: the ``amp`` choices and their autocast context.

The fused head stages run in fp32 under autocast (``fcnfast.nn`` casts them back); only the
backbone runs in the reduced dtype.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Dict, Optional

import torch

__all__ = ["AMP_DTYPES", "autocast"]

#: ``amp`` name -> autocast dtype. fp16 also needs a GradScaler when training (CUDA only).
AMP_DTYPES: Dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: Optional[str]) -> ContextManager:
    """``torch.autocast`` on ``device`` with ``AMP_DTYPES[amp]``; a no-op context for ``amp=None``."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])
