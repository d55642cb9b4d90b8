"""Timers: seconds per call of a function, and their summary (median, p10, p90 per image).

GPU: CUDA events around each call, after a synchronize; CPU: ``time.perf_counter``.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch


def sync(device: str) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def time_fn(fn: Callable[[], object], runs: int, warmup: int, device: str) -> List[float]:
    """Seconds per call of ``fn`` over ``runs`` timed calls after ``warmup`` untimed ones."""
    return time_fn_with_output(fn, runs, warmup, device)[0]


def time_fn_with_output(fn: Callable[[], object], runs: int, warmup: int, device: str) -> Tuple[List[float], object]:
    """(seconds per timed call, the first call's output): ``warmup`` untimed calls, then ``runs`` timed ones."""
    first = None
    for i in range(warmup):
        out = fn()
        if i == 0:
            first = out
    sync(device)
    times = []
    for _ in range(runs):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        if first is None:
            first = out
    return times, first


def alternating_rounds(calls: Dict[str, Callable[[], object]], rounds: int, reps: int) -> Dict[str, List[float]]:
    """Seconds per call of each of ``calls`` in each of ``rounds`` rounds that run every entry in
    turn (one untimed call, then ``reps`` timed ones; the round's median), so that all entries
    see the same machine state and round i of one entry can be paired with round i of another.
    Host timer: a GPU callable must synchronize itself."""
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            fn()
            per = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                per.append(time.perf_counter() - t0)
            times[name].append(statistics.median(per))
    return times


def alternating_medians(calls: Dict[str, Callable[[], object]], rounds: int, reps: int) -> Dict[str, float]:
    """Median over :func:`alternating_rounds` of each entry's seconds per call."""
    return {name: statistics.median(v) for name, v in alternating_rounds(calls, rounds, reps).items()}


def summarize(times: Sequence[float], batch: int) -> dict:
    """median / p10 / p90 in ms per batch and per image, and every run's time in ms."""
    import numpy as np

    arr = np.asarray(times, dtype=np.float64) * 1e3
    p10, med, p90 = (float(v) for v in np.percentile(arr, [10, 50, 90]))
    return {
        "runs": len(times), "median_ms": med, "p10_ms": p10, "p90_ms": p90,
        "median_ms_per_image": med / batch, "p10_ms_per_image": p10 / batch, "p90_ms_per_image": p90 / batch,
        "times_ms": [float(v) for v in arr],
    }
