"""Checks every command runs before its work starts, so that a bad setup fails in a second, not
after minutes of work (bench's measurement, a segmentation, a training run's setup).

Each raises :class:`fcnfast.errors.UserError` naming the option and the problem. Heavy imports
(torch, the models) stay inside the functions: ``fcnfast --help`` imports every command.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional, Tuple, Union

from fcnfast.errors import UserError, os_error_problem

if TYPE_CHECKING:
    import torch

__all__ = ["MEMORY_SHARE", "MemoryNeed", "check_backend", "check_output_dir", "memory_need"]

#: A forward that needs more than this share of the memory available gets a warning.
MEMORY_SHARE = 0.5


def check_output_dir(path: Union[str, os.PathLike], option: str) -> Path:
    """``path`` as a Path, once it is known that the command can write there.

    A folder that exists must accept a new file; one that does not is left uncreated (a failed
    command leaves nothing behind) and its nearest existing parent must be a folder that
    accepts a new file. The check writes and removes one empty temp file.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UserError(f"{option} {target}: exists and is not a folder")
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{option} {target}: cannot create it, {probe} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fcnfast-write-check-", dir=probe)
    except OSError as exc:
        what = "" if probe == target else f" (cannot create it in {probe})"
        raise UserError(f"{option} {target}: cannot write there{what}: {os_error_problem(exc)}") from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.remove(tmp)
    return target


def check_backend(requested: Optional[str], device: torch.device) -> str:
    """The backend that will run the fused heads on ``device`` (float32), known to run there:
    ``requested``, else FCNFAST_BACKEND, else the automatic choice."""
    import torch

    from fcnfast.backends import resolve_backend

    try:
        return resolve_backend(requested, device, torch.float32)
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from exc


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def _shrunk(height: int, width: int, max_side: int) -> Tuple[int, int]:
    # As fcnfast.images.shrink_to resizes.
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class MemoryNeed(NamedTuple):
    """The memory a forward needs (bytes), what is available (None: unknown) and the largest
    ``--max-side`` that brings the need within :data:`MEMORY_SHARE` of it (None: none does, or
    no shrinking is needed)."""

    need: int
    available: Optional[int]
    max_side: Optional[int]

    @property
    def too_large(self) -> bool:
        return self.available is not None and self.need > MEMORY_SHARE * self.available

    def describe(self, size: Tuple[int, int]) -> str:
        """ "needs about 8.1 GB of memory (3.2 GB available); pass --max-side 1700 ..." """
        text = f"{size[0]}x{size[1]} (HxW) needs about {_gb(self.need)} of memory"
        if self.available is not None:
            text += f" ({_gb(self.available)} available)"
        if self.max_side is not None:
            text += (f"; pass --max-side {self.max_side} to shrink it to "
                     f"{'x'.join(map(str, _shrunk(*size, self.max_side)))} first")
        elif self.too_large:
            text += "; most of it is the model's weights, so a smaller image would not help: free some memory"
        return text


def memory_need(model: str, num_classes: int, size: Tuple[int, int], device: torch.device) -> MemoryNeed:
    """What an inference forward of ``model`` on one ``size`` (H, W) image needs on ``device``,
    estimated from the model's geometry (:func:`fcnfast.models.memory.inference_bytes`)."""
    from fcnfast.devices import available_memory
    from fcnfast.models.memory import inference_bytes

    def need_at(h: int, w: int) -> int:
        return inference_bytes(model, num_classes, h, w)

    need, available = need_at(*size), available_memory(device)
    if available is None or need <= MEMORY_SHARE * available:
        return MemoryNeed(need, available, None)
    budget = MEMORY_SHARE * available
    low, high = 0, max(size) - 1  # the largest side whose shrunk image fits the budget
    while low < high:
        mid = (low + high + 1) // 2
        if need_at(*_shrunk(*size, mid)) <= budget:
            low = mid
        else:
            high = mid - 1
    return MemoryNeed(need, available, low or None)
