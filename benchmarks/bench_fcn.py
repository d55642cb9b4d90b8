"""pytest-benchmark: end-to-end FCN-8s latency per provider (random weights, 21 classes).

The providers and what each one runs come from ``fcnfast.benchmark.providers`` (the ones
``fcnfast bench`` times): ``reference``, ``fcnfast-<backend>``, ``fcnfast-optimize`` and, on
GPU, ``compile`` (torch.compile of the plain reference graph, in process here). One group per
(size, batch, dtype). On the 2-core CPU one forward at 500x500 takes 3.5-20 s: run it there
with e.g. ``--fcn-rounds 2`` (see benchmarks/README.md).
"""

import copy

import pytest
import torch

from fcnfast.benchmark import (DTYPES, build_bench_model, device_name, dtype_skip_reason, make_input, prepare,
                               size_label, sync)


@pytest.fixture(scope="module")
def model(bench_device):
    return build_bench_model("fcn8s", 21, None, seed=0, device=bench_device)


def test_fcn8s(benchmark, model, size, e2e_batch, dtype_name, fcn_provider, bench_device, bench_rounds):
    dtype, batch = DTYPES[dtype_name], e2e_batch
    reason = dtype_skip_reason(fcn_provider, dtype, bench_device)
    if reason:
        pytest.skip(reason)
    x = make_input(batch, (size, size), seed=0, device=bench_device)
    typed = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)  # the float32 model stays as it is
    on_gpu = bench_device.startswith("cuda")
    with torch.inference_mode():
        calls = prepare(fcn_provider, model, typed, x, dtype, bench_device,
                        compile_mode="max-autotune" if on_gpu else None)

        def run():
            calls.end_to_end()
            sync(bench_device)

        benchmark.group = f"fcn8s {size_label((size, size))} b{batch} {dtype_name}"
        benchmark.pedantic(run, rounds=bench_rounds, warmup_rounds=5 if on_gpu else 1, iterations=1)
    benchmark.extra_info.update(
        size=size, batch=batch, dtype=dtype_name, provider=fcn_provider, device=device_name(bench_device),
        ms_per_image=benchmark.stats.stats.median * 1e3 / batch,
    )
