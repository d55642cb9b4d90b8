"""Shared setup of the pytest-benchmark suites (see benchmarks/README.md).

Selection, by environment variable or the matching pytest option (the option wins):

    FCNFAST_BENCH_SIZES    --fcn-sizes      input sizes, e.g. "500,512,1024" (default: GPU all three, CPU 500)
    FCNFAST_BENCH_BATCHES  --fcn-batches    batch sizes of the head-stage suite (default "1,8")
    FCNFAST_BENCH_E2E_BATCHES --fcn-e2e-batches  batch sizes of the end-to-end suite (default "1")
    FCNFAST_BENCH_DTYPES   --fcn-dtypes     float32, float16, bfloat16 (default float32)
    FCNFAST_BENCH_ROUNDS   --fcn-rounds     timed rounds per benchmark (default: GPU 50, CPU 5)
    FCNFAST_BENCH_COMPILE  --fcn-compile    1/0: include torch.compile of the reference (default: 1 on GPU, 0 on CPU)

The Triton interpreter is never benchmarked: run these without TRITON_INTERPRET.

Every provider runs under fcnfast's host-memory policy (fcnfast.host_memory: glibc keeps large
freed blocks), applied before the first benchmark: the cpp backend applies it at its first large
output, so without this the providers timed before that call would run under another policy
than those after it. FCNFAST_CPU_KEEP_MEMORY=0 runs them all under glibc's default instead.
"""

from __future__ import annotations

import os

import pytest

from fcnfast import backends
from fcnfast.benchmark import COMPILE_PROVIDERS, BenchConfig, environment, fused_backends, providers_for, size_label
from fcnfast.host_memory import keep_freed_memory

DEVICE = BenchConfig().resolved().device  # the device `fcnfast bench` would pick
HAS_CUDA = DEVICE.startswith("cuda")

_OPTIONS = {
    "sizes": ("FCNFAST_BENCH_SIZES", "--fcn-sizes", "500,512,1024" if HAS_CUDA else "500"),
    "batches": ("FCNFAST_BENCH_BATCHES", "--fcn-batches", "1,8"),
    "e2e_batches": ("FCNFAST_BENCH_E2E_BATCHES", "--fcn-e2e-batches", "1"),
    "dtypes": ("FCNFAST_BENCH_DTYPES", "--fcn-dtypes", "float32"),
    "rounds": ("FCNFAST_BENCH_ROUNDS", "--fcn-rounds", "50" if HAS_CUDA else "5"),
    "compile": ("FCNFAST_BENCH_COMPILE", "--fcn-compile", "1" if HAS_CUDA else "0"),
}


def pytest_addoption(parser):
    group = parser.getgroup("fcnfast benchmarks")
    for key, (env, option, default) in _OPTIONS.items():
        group.addoption(option, default=None, help=f"{key} (env {env}; default {default})")


_config = None


def pytest_configure(config):
    global _config
    _config = config
    config.addinivalue_line("python_files", "bench_*.py")  # `pytest benchmarks/` collects the suites
    keep_freed_memory()  # one allocator policy for every provider (see the module docstring)
    if backends.triton_interpreted():
        print("fcnfast benchmarks: TRITON_INTERPRET is set; the triton provider is left out (never timed)")


def setting(key: str) -> str:
    env, option, default = _OPTIONS[key]
    value = _config.getoption(option) if _config is not None else None
    return value if value is not None else os.environ.get(env, default)


def int_list(key: str):
    return [int(v) for v in setting(key).replace(" ", "").split(",") if v]


def str_list(key: str):
    return [v for v in setting(key).replace(" ", "").split(",") if v]


def pytest_benchmark_update_machine_info(config, machine_info):
    """Name the device in the JSON (pytest-benchmark records only the host CPU)."""
    env = environment(DEVICE)
    keys = ("device", "device_name", "torch", "triton", "fcnfast", "git_commit", "torch_threads", "cpu_count",
            "load_average")
    machine_info["fcnfast"] = {k: env[k] for k in keys if k in env}
    machine_info["fcnfast"]["backends"] = {n: b["available"] for n, b in env["backends"].items()}


def pytest_generate_tests(metafunc):
    """Parametrize by fixture name, so both suites share the selection above."""
    names = metafunc.fixturenames
    if "stage" in names:
        metafunc.parametrize("stage", ["upscore2", "upscore_pool4", "upscore8"])
    if "size" in names:
        metafunc.parametrize("size", int_list("sizes"), ids=lambda s: size_label((s, s)))
    if "batch" in names:
        metafunc.parametrize("batch", int_list("batches"), ids=lambda b: f"b{b}")
    if "e2e_batch" in names:
        metafunc.parametrize("e2e_batch", int_list("e2e_batches"), ids=lambda b: f"b{b}")
    if "weights" in names:
        metafunc.parametrize("weights", ["bilinear", "dense"])
    if "dtype_name" in names:
        metafunc.parametrize("dtype_name", str_list("dtypes"))
    compile_on = setting("compile") not in ("0", "", "false", "no")
    if "stage_provider" in names:
        providers = ["reference", *fused_backends(DEVICE)] + (["compile"] if compile_on else []) + ["write-floor"]
        metafunc.parametrize("stage_provider", providers)
    if "fcn_provider" in names:
        providers = [p for p, _ in providers_for(DEVICE) if compile_on or p not in COMPILE_PROVIDERS]
        metafunc.parametrize("fcn_provider", providers)


@pytest.fixture(scope="session")
def bench_device():
    return DEVICE


@pytest.fixture(scope="session")
def bench_rounds():
    return int(setting("rounds"))


@pytest.fixture(scope="session")
def bench_inner():
    """Calls per timed round: GPU kernels take microseconds, so a round is 20 calls + one synchronize."""
    return 20 if HAS_CUDA else 1
