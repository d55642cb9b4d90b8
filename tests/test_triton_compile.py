"""Every Triton kernel of ``kernels/upsample_crop_add.py`` compiles to an sm_90 cubin.

What this proves, without a GPU: with Triton 3.6 (the version on the GPU machines), each
``@triton.jit`` kernel of the module lowers through TTIR, TTGIR, LLVM IR and PTX, and ptxas
(shipped inside the triton wheel) assembles it into a cubin for
``GPUTarget("cuda", 90, 32)`` (Hopper). Each kernel is compiled with its fixed configuration
(the one the launchers use with autotuning off) and with its most register-hungry autotune
configuration, in fp32, fp16 and bf16, with the constexpr flags as the launchers in
``fcnfast/backends/triton.py`` pass them on a GPU (``UPCAST=False``, ``IS_FP32`` from the
dtype), each of ``HAS_BIAS``, ``HAS_SKIP`` and ``IDX64`` on in one compile and off in
another. The registers and spills ptxas reports for every cubin are printed (``pytest -s``)
and summarised at the end of the run. It proves nothing about numerics (the interpreter
tests and the GPU tests do that), only that the GPU machine will not fail at compile time.

Kernel names, configurations and parameter lists are read from the module, so the test
follows the kernels as they change: a new kernel, a new constexpr flag or a new argument
fails here until the tables below say how the launchers set it.

The compile runs in subprocesses: conftest.py sets TRITON_INTERPRET=1 before fcnfast is
imported, and under the interpreter the kernels are interpreter objects that cannot be
compiled. The subprocesses start without TRITON_INTERPRET and import the module afresh.

Triton version: skipped when the installed Triton is not 3.6.x (the dev extra pins 3.6.0),
unless FCNFAST_REQUIRE_TRITON_VERSION is set (e.g. ``3.6``), which turns a different
version into a failure.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")
# Triton's internals (3.6's compile path) are imported where the worker uses them, so that a
# Triton without them is skipped by the version check instead of breaking collection.

TARGET = ("cuda", 90, 32)  # GPUTarget(backend, arch, warp_size): H100/H200
TRITON_VERSION = "3.6"  # the GPU machine's Triton
VERSION_ENV = "FCNFAST_REQUIRE_TRITON_VERSION"
MODULE = "fcnfast.kernels.upsample_crop_add"
LAUNCHERS = "fcnfast.backends.triton"
DTYPES = ("float32", "float16", "bfloat16")

# kernel -> (fixed configuration, autotune configurations): the pairing the launchers use.
# These are names in the module; the values (block sizes, warps, stages) are read from it.
KERNELS = {
    "_upsample_crop_add_fwd_kernel": ("_FWD_FIXED", "_FWD_CONFIGS"),
    "_upsample_crop_add_fwd_depthwise_kernel": ("_DW_FIXED", "_DW_CONFIGS"),
    "_upsample_crop_add_bwd_input_kernel": ("_BWD_X_FIXED", "_BWD_X_CONFIGS"),
    "_upsample_crop_add_bwd_input_depthwise_kernel": ("_BWD_DW_FIXED", "_BWD_DW_CONFIGS"),
    "_upsample_crop_add_bwd_weight_kernel": ("_BWD_W_FIXED", "_BWD_W_CONFIGS"),
}

# One compile with every optional feature on and one with all off covers each value of each
# flag per kernel and dtype (all 2^3 combinations would quadruple the run time). The
# layouts go with them so that both of Triton's stride specializations are compiled too.
COMBOS = {
    "on": {"HAS_BIAS": True, "HAS_SKIP": True, "IDX64": True, "layout": "nchw"},
    "off": {"HAS_BIAS": False, "HAS_SKIP": False, "IDX64": False, "layout": "channels_last"},
}


# ----------------------------------------------------------------------------- the test


def _check_triton_version():
    wanted = os.environ.get(VERSION_ENV, "").strip()
    version = triton.__version__
    expected = wanted or TRITON_VERSION
    if version == expected or version.startswith(expected + "."):
        return version
    message = (f"triton {version} is installed; the sm_90 compile check needs triton {expected}.x "
               f"(the GPU machine's version; `pip install -e \".[dev]\"` pins it)")
    if wanted:
        pytest.fail(f"{VERSION_ENV}={wanted}: {message}")
    pytest.skip(f"{message}; set {VERSION_ENV}={TRITON_VERSION} to make this a failure")


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def test_triton_kernels_compile_for_sm90(tmp_path, request):
    version = _check_triton_version()
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # A fresh cache: every kernel is really compiled (and ptxas reports on it), and nothing
    # lands in ~/.triton. The ptxas log is where the register and spill counts come from.
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    env["TRITON_DUMP_PTXAS_LOG"] = "1"
    shards = _workers()
    start = time.perf_counter()
    procs = []
    try:
        for shard in range(shards):
            out = tmp_path / f"shard{shard}.json"
            cmd = [sys.executable, __file__, "--shard", str(shard), str(shards), "--out", str(out)]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append((proc, out))
        records, planned = [], set()
        for proc, out in procs:
            log, _ = proc.communicate(timeout=900)
            assert proc.returncode == 0 and out.exists(), \
                f"compile worker failed (exit {proc.returncode}):\n{log[-6000:]}"
            result = json.loads(out.read_text())
            planned.add(result["planned"])
            records.extend(result["records"])
    finally:
        for proc, _ in procs:  # after a timeout or a failed worker: stop the others
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = time.perf_counter() - start

    assert len(planned) == 1, f"workers disagree on the compile plan: {planned}"
    (n_planned,) = planned
    records.sort(key=lambda r: r["index"])  # plan order
    print()
    for r in records:
        print(_describe(r))
    table = _table(records, version, wall, shards)
    print("\n".join(table))
    _summary(request.config).extend(table)

    failed = [r for r in records if r["error"]]
    assert not failed, "compile failed:\n" + "\n\n".join(
        f"{r['kernel']} {r['config']} {r['dtype']} {r['combo']}:\n{r['error']}" for r in failed)
    assert len(records) == n_planned > 0
    # Every kernel x (fixed, autotune) x dtype x combo was compiled, each once.
    assert len({(r["kernel"], r["config"], r["dtype"], r["combo"]) for r in records}) == n_planned
    assert {r["kernel"] for r in records} == set(KERNELS)
    for r in records:
        assert r["cubin_bytes"] > 0 and r["elf"], f"no cubin for {r['kernel']} {r['config']} {r['dtype']}"
        assert r["n_regs"] is not None, f"no ptxas register count for {r['kernel']}: {r['ptxas_log']}"


def _describe(r):
    flags = " ".join(f"{k}={int(v)}" for k, v in r["flags"].items())
    counts = ("ERROR" if r["error"] else
              f"n_regs={r['n_regs']} n_spills={r['n_spills']} (spill stores/loads "
              f"{r['spill_store_bytes']}/{r['spill_load_bytes']} B, cubin {r['cubin_bytes']} B)")
    return f"{r['kernel']} {r['config']} [{r['config_desc']}] {r['dtype']} {flags}: {counts} {r['seconds']} s"


def _table(records, version, wall, shards):
    """A compact table: one row per kernel x configuration, one column per dtype x combo,
    each cell ``n_regs/n_spills`` as Triton would report them on the GPU."""
    columns = [(d, c) for d in DTYPES for c in COMBOS]
    cells = {(r["kernel"], r["config"], r["dtype"], r["combo"]): r for r in records}
    rows = sorted({(r["kernel"], r["config"], r["config_desc"]) for r in records},
                  key=lambda k: (list(KERNELS).index(k[0]), k[1] != "fixed"))
    label = [f"{k.removeprefix('_upsample_crop_add_').removesuffix('_kernel')} {c} {desc}" for k, c, desc in rows]
    width = max(len(x) for x in label)
    head = " ".join(f"{d.replace('float', 'fp').replace('bfp', 'bf')}:{c:<3}".rjust(9) for d, c in columns)
    lines = [
        f"Triton {version} -> cubin sm_{TARGET[1]}: {len(records)} compiles "
        f"({len(KERNELS)} kernels x {len(rows) // max(len(KERNELS), 1)} configs x {len(DTYPES)} dtypes "
        f"x {len(COMBOS)} flag combos) in {wall:.1f} s on {shards} processes",
        "cells: n_regs/n_spills; on = HAS_BIAS,HAS_SKIP,IDX64 (NCHW), off = none (channels_last)",
        f"{'kernel config':<{width}} {head}",
    ]
    for text, (kernel, config, _) in zip(label, rows):
        row = []
        for d, c in columns:
            r = cells.get((kernel, config, d, c))
            cell = "ERR" if r is None or r["error"] else f"{r['n_regs']}/{r['n_spills']}"
            row.append(cell.rjust(9))
        lines.append(f"{text:<{width}} {' '.join(row)}")
    return lines


class _Summary:
    """Writes the table into pytest's terminal summary, so it shows without ``-s`` too."""

    def __init__(self):
        self.lines = []

    def extend(self, lines):
        self.lines.extend(lines)

    def pytest_terminal_summary(self, terminalreporter):
        if self.lines:
            terminalreporter.section("Triton sm_90 compile: registers/spills")
            for line in self.lines:
                terminalreporter.write_line(line)


def _summary(config) -> _Summary:
    plugin = config.pluginmanager.get_plugin("fcnfast-triton-compile-summary")
    if plugin is None:
        plugin = _Summary()
        config.pluginmanager.register(plugin, "fcnfast-triton-compile-summary")
    return plugin


# ----------------------------------------------------------------------------- the worker
# Runs as ``python test_triton_compile.py --shard I N --out FILE`` without TRITON_INTERPRET;
# compiles every N-th job of the plan from the I-th on and writes the results as JSON.


def _hungriest(configs):
    """Index of the autotune config most likely to run out of registers: the largest tile of
    BLOCK_* sizes per warp (a thread's share of the accumulator and operand tiles grows with
    it), ties to the larger tile. That is the config whose compile says the most about spills."""

    def tile(cfg):
        return math.prod(v for k, v in cfg.kwargs.items() if k.startswith("BLOCK_"))

    return max(range(len(configs)), key=lambda i: (tile(configs[i]) / configs[i].num_warps, tile(configs[i])))


def _strides(shape, layout):
    n, c, h, w = shape
    if layout == "nchw":
        return (c * h * w, h * w, w, 1)
    return (h * w * c, 1, w * c, c)  # channels_last


def _arg_values(dtype, combo, bwd_w_chunk):
    """Every runtime argument of the kernels by parameter name, as the launchers pass them for
    an FCN-16s head (VOC: 21 classes; upscore2: k=4, s=2, a 34 x 34 window at offset 0 of the
    36 x 36 upsampled output, score_pool4 cropped at 5). Triton specializes on values (an int
    equal to 1 becomes a constexpr, multiples of 16 and 16-byte aligned pointers get a
    divisibility hint), so real values give the signature a GPU launch compiles: the unit
    stride of each layout is a constexpr 1, the others are i32."""
    from triton.runtime.jit import MockTensor

    n, c, hin, h, hs, k, s = 2, 21, 17, 34, 44, 4, 2
    t = MockTensor(dtype)  # a stand-in tensor: the dtype and a 16-byte aligned data_ptr
    x_strides = _strides((n, c, hin, hin), combo["layout"])
    g_strides = _strides((n, c, h, h), combo["layout"])  # grad_out
    # The launcher passes zero strides for an absent skip (and `out` as its pointer).
    skip_strides = _strides((n, c, hs, hs), "nchw") if combo["HAS_SKIP"] else (0, 0, 0, 0)
    values = {
        "x_ptr": t, "w_ptr": t, "b_ptr": t, "skip_ptr": t, "out_ptr": t, "g_ptr": t, "gx_ptr": t,
        "part_ptr": MockTensor(torch.float32),  # grad_w partials are always fp32
        "N": n, "C": c, "Cin": c, "Cout": c, "Hin": hin, "Win": hin, "kh": k, "kw": k,
        "H": h, "W": h, "sh": s, "sw": s, "oy": 0, "ox": 0, "sy": 5, "sx": 5,
        "chunk": bwd_w_chunk,
        "TUNE_BUCKET": (n * h * h).bit_length(),  # the launchers' tune_bucket()
    }
    values.update(zip(("sxn", "sxc", "sxh", "sxw"), x_strides))
    values.update(zip(("ssn", "ssc", "ssh", "ssw"), skip_strides))
    values.update(zip(("sgn", "sgc", "sgh", "sgw"), g_strides))
    return values


def _flag_values(dtype, combo):
    """The constexpr flags as the launchers set them on a GPU."""
    return {
        "HAS_BIAS": combo["HAS_BIAS"], "HAS_SKIP": combo["HAS_SKIP"], "IDX64": combo["IDX64"],
        "IS_FP32": dtype == torch.float32,
        "UPCAST": False,  # fp32 stand-in for bf16, only under the interpreter
    }


def _plan():
    """[(kernel name, config label, config description, meta, dtype name, combo name)]."""
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.jit import JITFunction

    K = importlib.import_module(MODULE)
    fixed_warps = importlib.import_module(LAUNCHERS).FIXED_NUM_WARPS
    found = {name for name, obj in vars(K).items()
             if isinstance(obj, Autotuner) or (isinstance(obj, JITFunction) and name.endswith("_kernel"))}
    assert found == set(KERNELS), f"kernels in {MODULE}: {sorted(found)}; this test knows {sorted(KERNELS)}"
    jobs = []
    for name, (fixed_name, configs_name) in KERNELS.items():
        kernel, configs = getattr(K, name), getattr(K, configs_name)
        if isinstance(kernel, Autotuner):  # the autotuner must tune over the configs we compile
            assert kernel.configs is configs or kernel.configs == configs, f"{name} autotunes over other configs"
        best = _hungriest(configs)
        variants = [
            ("fixed", triton.Config(dict(getattr(K, fixed_name)), num_warps=fixed_warps)),
            (f"autotune[{best}]", configs[best]),
        ]
        for label, cfg in variants:
            meta = cfg.all_kwargs()
            desc = " ".join(f"{k.removeprefix('BLOCK_')}{v}" for k, v in cfg.kwargs.items())
            desc += f" w{meta['num_warps']}" + (f" s{meta['num_stages']}" if "num_stages" in meta else "")
            for dtype in DTYPES:
                for combo in COMBOS:
                    jobs.append((name, label, desc, meta, dtype, combo))
    return jobs


def _ptxas_counts(log):
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    stack = re.search(r"(\d+) bytes stack frame", log)
    return {
        "n_regs": int(regs.group(1)) if regs else None,
        # Triton's CompiledKernel.n_spills on a GPU is the function's local memory bytes / 4,
        # i.e. ptxas' stack frame (the spill slots) / 4. On an H200 both counts equalled
        # CompiledKernel.n_regs / n_spills of the loaded cubins for every compile here.
        "n_spills": int(stack.group(1)) // 4 if stack else None,
        "spill_store_bytes": int(spills.group(1)) if spills else None,
        "spill_load_bytes": int(spills.group(2)) if spills else None,
    }


def _launch_args(job, K):
    """(JITFunction, positional args, keyword args) of one job, as the launchers call it."""
    name, _, _, meta, dtype_name, combo_name = job
    fn = getattr(K, name)
    fn = getattr(fn, "fn", fn)  # the JITFunction under an Autotuner
    dtype, combo = getattr(torch, dtype_name), COMBOS[combo_name]
    values = _arg_values(dtype, combo, K._BWD_W_CHUNK)
    flags = _flag_values(dtype, combo)
    args, kwargs = [], dict(meta)
    for p in fn.params:
        if p.is_constexpr:
            if p.name not in meta:
                if p.name not in flags:
                    raise KeyError(f"constexpr {p.name} of {name}: add how the launchers set it to _flag_values")
                kwargs[p.name] = flags[p.name]
        elif p.name in values:
            args.append(values[p.name])
        else:
            raise KeyError(f"argument {p.name} of {name}: add the launchers' value to _arg_values")
    return fn, args, kwargs


def _compile_job(job, K, backend, target):
    """Compile one job as ``JITFunction.run`` would on an sm_90 device: the CompiledKernel."""
    from triton.compiler import ASTSource
    from triton.runtime.jit import create_function_from_signature

    fn, args, kwargs = _launch_args(job, K)
    # The steps of JITFunction.run (Triton 3.6) up to the compile, with the target given
    # instead of asked of a driver: the same specialization (signature, constexprs,
    # divisibility attributes) and options as a launch on an sm_90 device.
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization, options)
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__)


def _compile(index, job, K, backend, target):
    """Compile one job and return its record (errors are recorded, not raised)."""
    name, label, desc, meta, dtype_name, combo_name = job
    record = {"index": index, "kernel": name, "config": label, "config_desc": desc, "dtype": dtype_name,
              "combo": combo_name, "flags": {}, "error": None, "cubin_bytes": 0, "elf": False}
    start = time.perf_counter()
    log = io.StringIO()
    try:
        _, _, kwargs = _launch_args(job, K)
        record["flags"] = {k: v for k, v in kwargs.items() if k not in meta}
        with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG prints ptxas -v here
            compiled = _compile_job(job, K, backend, target)
        cubin = compiled.asm.get("cubin", b"")
        record["cubin_bytes"] = len(cubin)
        record["elf"] = cubin[:4] == b"\x7fELF"
    except Exception:
        record["error"] = traceback.format_exc(limit=-8)
    record["ptxas_log"] = log.getvalue().strip()
    record.update(_ptxas_counts(record["ptxas_log"]))
    record["seconds"] = round(time.perf_counter() - start, 2)
    print(_describe(record), flush=True)  # progress, shown when a worker fails
    return record


def _worker(argv):
    assert "TRITON_INTERPRET" not in os.environ, "the compile worker must run without the interpreter"
    shard, shards = int(argv[argv.index("--shard") + 1]), int(argv[argv.index("--shard") + 2])
    out = Path(argv[argv.index("--out") + 1])
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    K = importlib.import_module(MODULE)
    target = GPUTarget(*TARGET)
    backend = make_backend(target)
    jobs = _plan()
    # Interleaved, so that every worker gets its share of the slow (large-tile) compiles.
    records = [_compile(i, jobs[i], K, backend, target) for i in range(shard, len(jobs), shards)]
    out.write_text(json.dumps({"planned": len(jobs), "records": records}))


if __name__ == "__main__":
    _worker(sys.argv)
