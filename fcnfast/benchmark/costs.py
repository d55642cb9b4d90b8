"""What a forward costs at least: its FLOPs, the GEMM peak that turns them into a time floor, and
the tensor memory a call allocates at its peak.

- :func:`model_flops`: 2 x the multiply-adds of every convolution and head stage at an input
  size, counted on a meta-device model (no weights, no time), over the whole pad-100 canvas.
  That is the work eager PyTorch, ONNX Runtime and torch.compile do; fcnfast.optimize skips
  part of it (the pad-100 band, computed once per width), so its fraction of the floor can pass what its convolutions
  alone reach.
- :func:`gemm_peak_gflops`: the best of a few float32 ``n x n x n`` matrix products (torch.mm and,
  on the CPU, oneDNN's), measured in the same run as the providers (recorded in ``bench.json``):
  FLOPs / peak is the floor.
- :func:`peak_tensor_bytes`: the most memory that tensors allocated during one call held at
  once, from the profiler's allocation events (what ``torch.cuda.max_memory_allocated`` gives on
  a GPU). Memory held by other runtimes (ONNX Runtime) is not tensors and is not counted.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Tuple

import torch
from torch import nn

from ..models import build_model
from ..nn import UpsampleCropAdd
from .timing import sync

#: n of the n x n x n GEMM behind the peak (read at each call: tests make it small).
GEMM_SIZE = 4096


def model_flops(model: str, size: Tuple[int, int], batch: int = 1, num_classes: int = 21) -> Dict[str, int]:
    """FLOPs (2 per multiply-add) of one forward of ``model`` on a (batch, 3, H, W) input, as
    ``{"end_to_end": all, "head": the head stages}``: every nn.Conv2d over its output, every head
    stage over its output window (2x2 taps per input channel for FCN's k = 2s; ``kh*kw/(sh*sw)``
    in general)."""
    with torch.device("meta"):
        net = build_model(model, num_classes=num_classes)
    total = {"end_to_end": 0, "head": 0}

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            taps = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            taps = module.in_channels * module.kernel_size * module.kernel_size // (module.stride[0] * module.stride[1])
            total["head"] += 2 * output.numel() * taps
        total["end_to_end"] += 2 * output.numel() * taps

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, UpsampleCropAdd))]
    try:
        net(torch.empty(batch, 3, *size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return total


def gemm_products(device: str) -> Dict[str, Callable[[], object]]:
    """The float32 GEMM_SIZE^3 products the peak is the best of, by name: ``torch.mm`` (MKL or
    cuBLAS) and, on the CPU, oneDNN's (a 1x1 convolution in channels_last: the kernels the
    convolutions run on; MKL's sgemm reaches about half of it on AMD CPUs)."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(GEMM_SIZE, GEMM_SIZE, generator=gen).to(device) for _ in range(2))
    products: Dict[str, Callable[[], object]] = {"torch.mm": lambda: torch.mm(a, b)}
    if not device.startswith("cuda") and torch.backends.mkldnn.is_available():
        side = int(GEMM_SIZE**0.5)
        if side * side == GEMM_SIZE:
            x = a.t().reshape(1, GEMM_SIZE, side, side).contiguous(memory_format=torch.channels_last)
            w = torch.ops.mkldnn._reorder_convolution_weight(b.reshape(GEMM_SIZE, GEMM_SIZE, 1, 1), [0, 0], [1, 1],
                                                               [1, 1], 1)
            products["oneDNN"] = lambda: torch.ops.mkldnn._convolution_pointwise(
                x, w, None, [0, 0], [1, 1], [1, 1], 1, "none", [], "")
    return products


def gemm_gflops(seconds: float) -> float:
    """GFLOP/s of one GEMM_SIZE^3 product that took ``seconds``."""
    return 2.0 * GEMM_SIZE**3 / seconds / 1e9


def gemm_peak_gflops(device: str, repeats: int = 3) -> Tuple[float, str]:
    """(GFLOP/s, which product) of the fastest of ``repeats`` runs of each :func:`gemm_products` (after
    one untimed run each), with TF32 off on a GPU: the peak the providers' float32 work is held to."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    best: Tuple[float, str] = (float("inf"), "")
    try:
        for name, product in gemm_products(device).items():
            product()
            sync(device)
            for _ in range(repeats):
                t0 = time.perf_counter()
                product()
                sync(device)
                best = min(best, (time.perf_counter() - t0, name))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return gemm_gflops(best[0]), best[1]


def peak_tensor_bytes(fn: Callable[[], object], device: str) -> int:
    """The peak of the bytes held by tensors that ``fn()`` allocated, over one call (memory held
    before the call, its inputs and weights, is not counted; the output is)."""
    if device.startswith("cuda"):
        sync(device)
        dev = torch.device(device)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        out = fn()
        sync(device)
        del out
        return int(torch.cuda.max_memory_allocated(dev) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    del out
    # Every allocation and free is a leaf of the profiler's event tree, with its time and signed size
    # (the per-op totals charge a child's allocation and its free to different ops).
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        size = getattr(node.extra_fields, "alloc_size", None)
        if size is not None:
            events.append((node.start_time_ns, size))
    held = peak = 0
    for _, size in sorted(events):
        held += size
        peak = max(peak, held)
    return int(peak)


__all__ = ["GEMM_SIZE", "model_flops", "gemm_products", "gemm_gflops", "gemm_peak_gflops", "peak_tensor_bytes"]
