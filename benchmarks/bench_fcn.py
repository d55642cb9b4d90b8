"""pytest-benchmark: end-to-end FCN-8s latency per provider (random weights, 21 classes).

Providers: ``reference`` (eager, heads on backend="reference"), ``fcnfast-<backend>`` (eager,
fused heads), ``fcnfast-optimize`` (fcnfast.optimize: folded/explicit heads, channels_last,
CUDA graphs on GPU) and, on GPU, ``compile`` (torch.compile of the plain reference graph).
One group per (size, batch, dtype). On the 2-core CPU one forward at 500x500 takes 3.5-20 s:
run it there with e.g. ``--fcn-rounds 2`` (see benchmarks/README.md).
"""

import pytest
import torch

from fcnfast.benchmark import DTYPES, build_bench_model, device_name, make_input, plain_reference_model
from fcnfast.optimize import optimize


@pytest.fixture(scope="module")
def model(bench_device):
    return build_bench_model("fcn8s", 21, None, seed=0, device=bench_device)


def test_fcn8s(benchmark, model, size, e2e_batch, dtype_name, fcn_provider, bench_device, bench_rounds, sync):
    dtype, batch = DTYPES[dtype_name], e2e_batch
    x = make_input(batch, (size, size), seed=0, device=bench_device)
    try:
        if fcn_provider == "fcnfast-optimize":
            fast = optimize(model, dtype=dtype, cuda_graph=bench_device == "cuda")
            inp = x

            def forward():
                return fast(inp)
        elif fcn_provider == "compile":
            net = model.to(dtype)  # in place; restored below
            compiled = torch.compile(plain_reference_model(net), mode="max-autotune" if bench_device == "cuda" else None)
            inp = x.to(dtype)

            def forward():
                return compiled(inp)
        else:
            backend = "reference" if fcn_provider == "reference" else fcn_provider[len("fcnfast-"):]
            from fcnfast.backends import _can_run

            ok, reason = _can_run(backend, bench_device, dtype)
            if not ok:
                pytest.skip(reason)
            net = model.to(dtype)
            net.set_backend(backend)
            inp = x.to(dtype)

            def forward():
                return net(inp)

        def run():
            forward()
            sync()

        with torch.inference_mode():
            benchmark.group = f"fcn8s {size}x{size} b{batch} {dtype_name}"
            benchmark.pedantic(run, rounds=bench_rounds, warmup_rounds=1 if bench_device == "cpu" else 5, iterations=1)
        benchmark.extra_info.update(
            size=size, batch=batch, dtype=dtype_name, provider=fcn_provider, device=device_name(bench_device),
            ms_per_image=benchmark.stats.stats.median * 1e3 / batch,
        )
    finally:
        if dtype != torch.float32:
            model.float()
