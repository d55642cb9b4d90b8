"""Turning a user's device request ("auto", "cpu", "cuda", "cuda:N") into a ``torch.device``.

The one place that decides what "auto" means and that reports a request this machine cannot
serve. Depends on torch only.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

__all__ = ["DEVICE_CHOICES", "resolve_device"]

#: What a device request may be, for help texts and error messages.
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(requested: Union[str, torch.device, None] = "auto",
                   local_rank: Optional[int] = None) -> torch.device:
    """The ``torch.device`` for ``requested``.

    - ``"auto"`` (or None, ""): CUDA when torch sees a GPU, else the CPU.
    - ``"cpu"``; ``"cuda:N"`` as given.
    - ``"cuda"`` and a CUDA "auto": ``cuda:local_rank`` when ``local_rank`` is given (the GPU of
      this process under torchrun), else the index-less ``cuda`` (torch's current device).

    Raises ValueError naming the request when it is not one of :data:`DEVICE_CHOICES`, when it
    asks for CUDA and torch sees no CUDA device, or when ``cuda:N`` is beyond the device count.
    """
    if requested is None or (isinstance(requested, str) and requested.strip().lower() in ("", "auto")):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        requested = "cuda"
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {requested!r} is not one of {DEVICE_CHOICES}") from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(f"device {requested!r} is not supported; choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {str(requested)!r} was requested but torch sees no CUDA device "
                         f"(a CPU-only torch build, or no GPU visible)")
    if device.index is None:
        return torch.device("cuda", local_rank) if local_rank is not None else device
    count = torch.cuda.device_count()
    if device.index >= count:
        raise ValueError(f"device {str(requested)!r} was requested but torch sees {count} CUDA device(s)")
    return device
