"""One process or many: joining torchrun's process group, and the few collectives training uses.

Under torchrun (env ``WORLD_SIZE`` > 1) each process joins the group (gloo on the CPU, nccl on
CUDA) and trains on ``cuda:LOCAL_RANK``; in one process nothing is initialised and every helper
here is a no-op.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Tuple

import torch

from ..devices import resolve_device
from .config import TrainingError

__all__ = ["DistInfo", "barrier", "setup_distributed", "sum_over_ranks", "teardown"]


@dataclasses.dataclass
class DistInfo:
    """This process's place in the run. ``initialized_here``: :func:`setup_distributed` created
    the process group, so :func:`teardown` destroys it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _device(requested: str, local_rank: int) -> torch.device:
    try:
        return resolve_device(requested, local_rank)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc


def setup_distributed(requested_device: str = "auto") -> Tuple[DistInfo, torch.device]:
    """(this process's DistInfo, its device). Joins the process group torchrun describes (env
    WORLD_SIZE > 1); a group the caller initialised already is used as it is. Raises
    TrainingError for a device this machine cannot serve."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)
        return info, _device(requested_device, info.local_rank)
    if world <= 1:
        return DistInfo(), _device(requested_device, 0)
    if not dist.is_available():
        raise TrainingError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    device = _device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, initialized_here=True), device


def sum_over_ranks(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """``tensor`` summed over all ranks (in place); ``tensor`` itself in one process."""
    if info.enabled:
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process)."""
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def teardown(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup_distributed` created it; safe to call twice."""
    if not info.initialized_here:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
