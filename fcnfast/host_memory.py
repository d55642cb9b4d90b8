"""The process's host-allocator policy for large CPU tensors (glibc): keep freed blocks for reuse.

FCN's CPU tensors are tens of MB (feature maps; the head's output is 21 MB per 500x500 image).
By default glibc serves such a block from a fresh mmap or trims it off the heap's top when it is
freed, so the next tensor of that size page-faults all of its memory in again. Measured on the
2-core CPU: ~25% of a conv1_2 call; and the fused head, called through its registered op, took
about 50 page faults and twice its kernel's time per 500x500 call, where allocating and filling
the same output took none. :func:`keep_freed_memory` turns both off, once per process, as an
inference arena would; ``FCNFAST_CPU_KEEP_MEMORY=0`` keeps glibc's default (the process then
returns freed memory to the OS, at that cost).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["KEEP_MEMORY_ENV", "LARGE_TENSOR_BYTES", "keep_freed_memory"]

#: "0" keeps glibc's default of returning large freed blocks to the OS.
KEEP_MEMORY_ENV = "FCNFAST_CPU_KEEP_MEMORY"
#: Outputs from this size on make the cpp backend apply :func:`keep_freed_memory`.
LARGE_TENSOR_BYTES = 16 << 20

_applied = False


def keep_freed_memory() -> None:
    """Make glibc keep large freed blocks for reuse instead of unmapping or trimming them (once
    per process): no mmap for malloc, no trimming of the heap's top. The process keeps its peak
    memory. A no-op off glibc, or with ``FCNFAST_CPU_KEEP_MEMORY=0``."""
    global _applied
    if _applied or os.environ.get(KEEP_MEMORY_ENV, "1") == "0":
        return
    _applied = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
    mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1))
    mallopt(m_mmap_max, ctypes.c_int(0))
