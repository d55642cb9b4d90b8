"""``FCNFAST_CUDA_SYNC_CHECK=1``: synchronize after every GPU launch and name the kernel that failed.

CUDA reports a fault (an illegal address, say) at the next synchronizing call, which may be
far from the kernel that caused it. With the switch on, the CUDA and Triton launchers
synchronize the device after each launch and re-raise the error with the kernel's name.
It costs a full synchronization per launch: a debugging and sanitizer aid, off by default.
"""

from __future__ import annotations

import os

import torch

ENV_VAR = "FCNFAST_CUDA_SYNC_CHECK"


def enabled() -> bool:
    value = os.environ.get(ENV_VAR, "0").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{ENV_VAR} must be 0 or 1, got {value!r}")
    return value == "1"


def after_launch(kernel: str, device: torch.device) -> None:
    """Synchronize ``device`` and raise naming ``kernel`` if it faulted (only with the switch on)."""
    if device.type != "cuda" or not enabled():
        return
    if torch.cuda.is_current_stream_capturing():  # synchronizing would invalidate a graph capture
        return
    try:
        torch.cuda.synchronize(device)
    except RuntimeError as exc:
        raise RuntimeError(f"fcnfast: CUDA error in or before kernel {kernel} on {device} "
                           f"({ENV_VAR}=1 synchronizes after every launch): {exc}") from exc
