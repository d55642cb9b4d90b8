"""pytest-benchmark: each FCN-8s head stage, every fused backend vs the plain PyTorch reference.

Stages (FCN-8s geometry at the given input size, 21 classes):
    upscore2        score_fr -> k4 s2, + score_pool4 window at 5
    upscore_pool4   fuse_pool4 -> k4 s2, + score_pool3 window at 9
    upscore8        fuse_pool3 -> k16 s8, window at 31 (the input's size)

One benchmark group per (stage, size, batch, weights, dtype) with the providers side by side:
``reference`` (fcnfast.reference: conv_transpose2d, then crop and add), every fused backend that
runs here (never the Triton interpreter), ``compile`` (torch.compile of the reference; GPU
default) and ``write-floor``: allocating and filling the stage's output (``torch.empty(...).fill_``),
the least any implementation must do, timed side by side. ``extra_info`` holds ms per call and GB/s (bytes read + written: x, the skip window,
the output). Each provider's ``floor_ratio`` compares it with the write floor timed in alternation
with it (``FLOOR_ROUNDS`` rounds in the same process, medians): on a CPU whose L3 holds the output,
that floor moves by 2-3x between processes and even between tests (whether the allocator's block
sits on huge pages), so only a floor timed beside the provider is a fair yardstick.
On GPU a timed round is ``inner_calls`` calls followed by one synchronize. Rounds: at least
--fcn-rounds, more for fast stages (about one second's worth, at most 200).
"""

import time

import pytest
import torch

from fcnfast import backends, upsample_crop_add
from fcnfast.benchmark import DTYPES, alternating_medians, device_name, head_stage_shapes, size_label, sync
from fcnfast.reference import bilinear_weight, upsample_crop_add_reference

NUM_CLASSES = 21
WRITE_FLOOR = "write-floor"
FLOOR_ROUNDS = 7  # alternating rounds of (provider, write floor) for floor_ratio


def _case(stage, size, batch, weights, dtype, device):
    shapes = head_stage_shapes("fcn8s", (size, size), batch, NUM_CLASSES)
    st = next(s for s in shapes if s["name"] == stage)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(st["x_shape"], generator=gen).to(device, dtype)
    skip = None if st["skip_shape"] is None else torch.randn(st["skip_shape"], generator=gen).to(device, dtype)
    k = st["kernel"]
    if weights == "bilinear":  # FCN's frozen filters: channel-diagonal, detected -> depthwise path
        w = bilinear_weight(NUM_CLASSES, NUM_CLASSES, k)
    else:  # learned filters: dense
        w = torch.randn(NUM_CLASSES, NUM_CLASSES, k, k, generator=gen) * 0.05
    kwargs = dict(offset=st["offset"], size=st["size"], skip=skip, skip_offset=st["skip_offset"])
    return x, w.to(device, dtype), st["stride"], kwargs, st


def test_stage(benchmark, stage, size, batch, weights, dtype_name, stage_provider, bench_device, bench_rounds,
               bench_inner):
    dtype = DTYPES[dtype_name]
    if stage_provider not in ("reference", "compile", WRITE_FLOOR):
        ok, reason = backends.supports(stage_provider, bench_device, dtype)
        if not ok:
            pytest.skip(reason)
    x, w, stride, kwargs, st = _case(stage, size, batch, weights, dtype, bench_device)
    out_shape = upsample_crop_add_reference(x[:1], w, stride, **{**kwargs, "skip": None}).shape[1:]
    def write_floor():
        return torch.empty((x.shape[0], *out_shape), dtype=dtype, device=bench_device).fill_(1.0)

    if stage_provider == WRITE_FLOOR:
        op = write_floor
    elif stage_provider == "reference":
        def op():
            return upsample_crop_add_reference(x, w, stride, **kwargs)
    elif stage_provider == "compile":
        compiled = torch.compile(upsample_crop_add_reference, dynamic=False)

        def op():
            return compiled(x, w, stride, **kwargs)
    else:
        depthwise = weights == "bilinear"

        def op():
            return upsample_crop_add(x, w, stride, depthwise=depthwise, backend=stage_provider, **kwargs)

    with torch.inference_mode():
        out = op()
        expected = out.double() if stage_provider == WRITE_FLOOR else upsample_crop_add_reference(
            x.double(), w.double(), stride, **{**kwargs, "skip": None if kwargs["skip"] is None else kwargs["skip"].double()})
        err = (out.double() - expected).abs().max().item()
        tol = (1e-4 if dtype == torch.float32 else 5e-2) * max(expected.abs().max().item(), 1.0)
        assert err <= tol, f"{stage_provider} differs from the reference by {err:.3e} (> {tol:.3e})"

        def run(fn=op):
            for _ in range(bench_inner):
                fn()
            sync(bench_device)

        # Fast stages get more rounds (about 1 s of them, at most 200): a steadier median.
        run()
        t0 = time.perf_counter()
        run()
        per_round = time.perf_counter() - t0
        rounds = max(bench_rounds, min(200, int(1.0 / max(per_round, 1e-6))))
        benchmark.group = f"{stage} {size_label((size, size))} b{batch} {weights} {dtype_name}"
        benchmark.pedantic(run, rounds=rounds, warmup_rounds=2, iterations=1)
        floor_ratio = None
        if stage_provider not in (WRITE_FLOOR, "reference"):
            medians = alternating_medians({"mine": run, "floor": lambda: run(write_floor)}, FLOOR_ROUNDS,
                                          max(1, min(20, rounds // 4)))
            mine, floor = medians["mine"], medians["floor"]
            floor_ratio = {"ratio": mine / floor, "ms_per_call": mine / bench_inner * 1e3,
                           "floor_ms_per_call": floor / bench_inner * 1e3, "rounds": FLOOR_ROUNDS}

    es = x.element_size()
    N, C, H, W = out.shape
    moved = x.numel() * es + (N * C * H * W * es if kwargs["skip"] is not None else 0) + out.numel() * es
    per_call = benchmark.stats.stats.median / bench_inner
    benchmark.extra_info.update(
        stage=stage, size=size, batch=batch, weights=weights, dtype=dtype_name, provider=stage_provider,
        device=device_name(bench_device), x_shape=list(st["x_shape"]), out_shape=[N, C, H, W],
        kernel=st["kernel"], stride=list(st["stride"]), bytes=moved, inner_calls=bench_inner,
        ms_per_call=per_call * 1e3, gbps=moved / per_call / 1e9, max_abs_err=err, floor_ratio=floor_ratio,
    )
