"""The C++ kernels' instruction sets side by side on FCN-8s' head stages (CPU).

For each stage (bilinear filters, so the depthwise path) and each instruction set this CPU runs
(``fcnfast._C.available_isas()``), times the fused op in alternation with the other sets and
with the write floor (allocating and filling the stage's output), in one process. Ratios are
medians of per-round ratios (each round times every entry once, so a pair shares the machine's
state, which on a small shared CPU drifts by 2-3x within minutes). ``-o`` writes JSON.

Where the stage's output is at least ``fcnfast._C.stream_min_bytes()`` (the last-level cache), the
AVX-512 set writes it with non-temporal stores; an extra entry, ``avx512-cached``, then times the
same set with that switched off, side by side.

``--preallocated`` times the C++ kernel alone instead, writing into one output allocated in
advance, against ``fill_`` of that same output: no Python dispatch, no allocation, and the same
memory for every entry (on a CPU whose L3 holds the output, freshly allocated outputs may
alternate between two blocks that together do not fit).

``--baseline PATH`` (with ``--preallocated``) adds the default set of another build of the
extension, ``PATH`` to a copy of its ``_C*.so`` (e.g. one built at an earlier commit), as the entry
``baseline``: a kernel change measured against its predecessor side by side, in one process.

    python benchmarks/cpu_isas.py --size 500 --batch 1 -o benchmarks/results/cpu-amd-epyc/cpu_isas-500-b1.json
    python benchmarks/cpu_isas.py --preallocated --baseline /tmp/old/_C.so
"""

from __future__ import annotations

import argparse
import importlib.util
import json

import statistics

import torch

import fcnfast
from fcnfast import _C
from fcnfast.backends._abi import DTYPE_CODES, geometry_list, ptr, strides
from fcnfast.benchmark import alternating_rounds, environment, head_stage_shapes
from fcnfast.geometry import resolve_geometry
from fcnfast.host_memory import keep_freed_memory
from fcnfast.reference import bilinear_weight

NUM_CLASSES = 21
FLOOR = "write-floor"
CACHED = "avx512-cached"  # the AVX-512 set with its non-temporal stores switched off
NEVER = 1 << 62  # a stream_min_bytes no output reaches


BASELINE = "baseline"  # the default set of another build of _C (--baseline)


def load_extension(path: str):
    """Another build of ``fcnfast._C``, imported from the file ``path`` beside the installed one."""
    spec = importlib.util.spec_from_file_location("fcnfast_baseline._C", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline {path}: not a loadable extension module")
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as e:
        raise SystemExit(f"--baseline {path}: {e}") from None
    return module


def stage_call(stage: str, size: int, batch: int, preallocated: bool, extensions=(_C,)):
    """(op, floor, output bytes) for one FCN-8s head stage with bilinear filters: closures for the
    fused op and allocating + filling its output, or (preallocated) the C++ kernel and ``fill_``
    writing into one output allocated here; then ``op`` is a list, one kernel per module of
    ``extensions`` (builds of ``fcnfast._C``)."""
    st = next(s for s in head_stage_shapes("fcn8s", (size, size), batch, NUM_CLASSES) if s["name"] == stage)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(st["x_shape"], generator=gen)
    skip = None if st["skip_shape"] is None else torch.randn(st["skip_shape"], generator=gen)
    weight = bilinear_weight(NUM_CLASSES, NUM_CLASSES, st["kernel"])
    kw = dict(offset=st["offset"], size=st["size"], skip=skip, skip_offset=st["skip_offset"])

    def op():
        return fcnfast.upsample_crop_add(x, weight, st["stride"], depthwise=True, backend="cpp", **kw)

    out = op()
    if not preallocated:
        return op, lambda: torch.empty(out.shape).fill_(1.0), out.nbytes
    geom = resolve_geometry(x, weight, None, skip, st["stride"], st["offset"], st["size"], st["skip_offset"])
    args = (geometry_list(geom), DTYPE_CODES[x.dtype], x.data_ptr(), strides(x), weight.data_ptr(), 0, ptr(skip),
            strides(skip), out.data_ptr(), True)

    operands = (x, weight, skip, out)  # args holds their addresses only: keep them alive with the closure

    def kernel(module):
        def run():
            module.upsample_crop_add_fwd(*args, torch.get_num_threads())
            return operands
        return run

    return [kernel(m) for m in extensions], lambda: out.fill_(1.0), out.nbytes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=500, help="input height = width (default 500)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds (default 15)")
    parser.add_argument("--reps", type=int, default=20, help="timed calls per entry and round (default 20)")
    parser.add_argument("--preallocated", action="store_true",
                        help="time the C++ kernel alone into one preallocated output, against fill_ of it")
    parser.add_argument("--baseline", metavar="PATH",
                        help="with --preallocated: also time this other build of fcnfast._C (a _C*.so)")
    parser.add_argument("-o", "--output", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.baseline and not args.preallocated:
        parser.error("--baseline needs --preallocated (it times the kernels alone)")
    baseline = load_extension(args.baseline) if args.baseline else None

    keep_freed_memory()  # as the cpp backend does at its first large output, for every entry alike
    isas = list(_C.available_isas())
    before = _C.current_isa()
    stream_min = _C.stream_min_bytes()
    results = {"isas": isas, "default_isa": before, "stream_min_bytes": stream_min, "size": args.size, "batch": args.batch, "rounds": args.rounds,
               "reps": args.reps, "preallocated": args.preallocated, "baseline": args.baseline,
               "environment": environment("cpu"), "stages": {}}
    extensions = (_C,) if baseline is None else (_C, baseline)
    try:
        with torch.inference_mode():
            for stage in ("upscore2", "upscore_pool4", "upscore8"):
                op, floor, out_bytes = stage_call(stage, args.size, args.batch, args.preallocated, extensions)
                if args.preallocated:
                    op, *baseline_op = op
                calls = {isa: (lambda isa=isa: (_C.set_isa(isa), op())) for isa in isas}
                if baseline is not None:
                    calls[BASELINE] = baseline_op[0]
                if "avx512" in isas and out_bytes >= stream_min:
                    calls[CACHED] = lambda: (_C.set_isa("avx512"), _C.set_stream_min_bytes(NEVER), op(),
                                             _C.set_stream_min_bytes(stream_min))
                calls[FLOOR] = floor
                per_round = alternating_rounds(calls, args.rounds, args.reps)
                ms = {k: statistics.median(v) * 1e3 for k, v in per_round.items()}

                def ratio(a, b):
                    return statistics.median(x / y for x, y in zip(per_round[a], per_round[b]))

                timed = [k for k in calls if k != FLOOR]
                results["stages"][stage] = {
                    "ms_per_call": ms,
                    "x_floor": {isa: ratio(isa, FLOOR) for isa in timed},
                    "x_generic": {isa: ratio(isa, "generic") for isa in isas},
                    "x_avx2": {isa: ratio(isa, "avx2") for isa in isas} if "avx2" in isas else None,
                }
                if baseline is not None:
                    results["stages"][stage]["x_baseline"] = {isa: ratio(isa, BASELINE) for isa in isas}
                cells = "  ".join(f"{isa} {ms[isa]:.3f} ms ({ratio(isa, FLOOR):.2f}x floor)" for isa in timed)
                rel = f"  avx512/avx2 {ratio('avx512', 'avx2'):.2f}" if {"avx2", "avx512"} <= set(isas) else ""
                if baseline is not None:
                    rel += f"  {before}/baseline {ratio(before, BASELINE):.2f}"
                print(f"{stage:14s} b{args.batch} {args.size}: {cells}  floor {ms[FLOOR]:.3f} ms{rel}")
    finally:
        _C.set_isa(before)
        _C.set_stream_min_bytes(stream_min)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
