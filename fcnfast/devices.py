"""Turning a user's device request ("auto", "cpu", "cuda", "cuda:N") into a ``torch.device``.

The one place that decides what "auto" means and that reports a request this machine cannot
serve. Depends on torch only.
"""

from __future__ import annotations

import os
from typing import List, Optional, Union

import torch

__all__ = ["DEVICE_CHOICES", "available_memory", "resolve_device"]

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


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cpu_memory_limits() -> List[int]:
    """Bytes this process may still allocate, by each limit Linux tells about."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    # A cgroup (v2, then v1) limit: containers and batch schedulers.
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            limits.append(max(limit - usage, 0))
            break
    # ulimit -v: the address space left, where an allocator fails first.
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limits.append(max(soft - used, 0))
    except (ImportError, OSError, ValueError):
        pass
    return limits


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes a computation on ``device`` can still allocate, or None where that is unknown.

    CUDA: the device's free memory. CPU: the smallest of the available RAM, the cgroup limit
    left and the address space ``ulimit -v`` leaves (Linux; None elsewhere).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    limits = _cpu_memory_limits()
    return min(limits) if limits else None
