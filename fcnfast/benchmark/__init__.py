"""FCN latency benchmark: the library behind ``fcnfast bench`` and the suites in ``benchmarks/``.

For each (size, batch, dtype) it times, per provider, the *head* (the fused upsampling stages
fed with the real intermediate tensors of one backbone run) and the *end-to-end* forward,
separately: the fused head wins big on its own stages and a little end to end. Each provider's
output is compared with the float32 reference output (TF32 off). Results: ``bench.json``
(environment, config, one entry per size, batch, dtype, provider and kind) and ``bench.png``.

One job per module; each imports only the ones above it:

    timing          sync, time_fn, summarize
    workload        the benchmarked model and input
    heads           head inputs captured from a forward, the heads chained again, plain-PyTorch heads, stage shapes
    providers       which providers run here, and the calls each one times (prepare)
    config          BenchConfig (the only place the device is resolved), DTYPES, per-device defaults, HxW sizes
    costs           FLOPs of a forward, the GEMM peak (the FLOP floor), peak tensor memory of a call
    compile_worker  the compile providers in a time-boxed child process (python -m fcnfast.benchmark --compile-worker)
    plot            bench.png
    report          the console table, bench.json + bench.png, markdown for the README
    runner          run_benchmark (each provider's runs in turn)
    interleaved     run_interleaved (every provider once per round: --rounds)
"""

from ..environment import device_name
from ..environment import probe as environment  # the name bench.json and the suites have always used
from .config import COMPILE_MODES, DEVICE_DEFAULTS, DTYPES, KINDS, BenchConfig, parse_size, size_label
from .heads import HeadInputs, PlainHead, capture_head_inputs, head_stage_shapes, plain_reference_model, run_heads
from .providers import (ALL_PROVIDERS, COMPILE_PROVIDERS, FUSED_BACKENDS, PROVIDER_COMPILE, PROVIDER_COMPILE_FREEZING,
                        PROVIDER_ONNXRUNTIME, PROVIDER_OPTIMIZE, PROVIDER_REFERENCE,
                        Calls, dtype_skip_reason, fused_backends, prepare, providers_for)
from .interleaved import run_interleaved
from .report import format_ms, format_table, write_report
from .runner import max_abs_diff, run_benchmark
from .timing import alternating_medians, alternating_rounds, summarize, sync, time_fn, time_fn_with_output
from .workload import build_bench_model, make_input

__all__ = [
    "ALL_PROVIDERS", "BenchConfig", "COMPILE_MODES", "Calls", "DEVICE_DEFAULTS", "DTYPES", "FUSED_BACKENDS", "HeadInputs",
    "KINDS", "COMPILE_PROVIDERS", "PROVIDER_COMPILE", "PROVIDER_COMPILE_FREEZING", "PROVIDER_ONNXRUNTIME",
    "PROVIDER_OPTIMIZE", "PROVIDER_REFERENCE", "PlainHead", "alternating_medians", "alternating_rounds", "build_bench_model",
    "capture_head_inputs", "device_name", "dtype_skip_reason", "environment", "format_ms", "format_table",
    "fused_backends", "head_stage_shapes", "make_input", "max_abs_diff", "parse_size", "plain_reference_model",
    "prepare", "providers_for", "run_benchmark", "run_heads", "run_interleaved", "size_label", "summarize", "sync", "time_fn",
    "time_fn_with_output", "write_report",
]
