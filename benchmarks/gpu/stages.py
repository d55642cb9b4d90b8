"""Step ``stages`` of validate.sh: each FCN-8s head stage, fused kernels against PyTorch.

For every stage of FCN-8s at 500x500 (upscore2 + score_pool4 skip, upscore_pool4 + score_pool3
skip, upscore8 + crop), batch 1 and 8, float32 and bfloat16, bilinear (frozen, FCN's default:
the depthwise path) and dense (learned) weights, it times

    eager     the reference op (conv_transpose2d + crop + add) with cudnn.benchmark on
    compile   torch.compile of the same function (default mode, static shapes, time-boxed)
    triton    fcnfast.upsample_crop_add(backend="triton"), autotuned unless FCNFAST_TRITON_AUTOTUNE=0
    cuda      fcnfast.upsample_crop_add(backend="cuda")

by CUDA events (triton.testing.do_bench: median and 20/80th percentiles, L2 flushed between
runs) twice: called from Python as a user would (launch costs included), and replayed from a
CUDA graph (the GPU's own time). It reports the achieved GB/s against the bytes the fused kernel must move (x, weight,
the skip window and the output, each once) and against a device-to-device copy measured in the
same run, plus the max error relative to an fp64 reference. Writes stages.json after every
configuration, so a run cut short keeps what it measured. ``--tiny``: the dry run's CPU version.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

import fcnfast
from fcnfast.benchmark import head_stage_shapes
from fcnfast.reference import bilinear_weight, upsample_crop_add_reference

PROVIDERS = ("eager", "compile", "triton", "cuda")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _write(path: str, report: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)


def _time(fn: Callable[[], object], device: str, tiny: bool) -> Dict[str, float]:
    if device == "cuda":
        import triton.testing

        med, p20, p80 = triton.testing.do_bench(fn, warmup=10, rep=40, quantiles=[0.5, 0.2, 0.8])
        return {"median_ms": med, "p20_ms": p20, "p80_ms": p80}
    fn()
    times = []
    for _ in range(2 if tiny else 10):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "p20_ms": min(times), "p80_ms": max(times)}


def _graph_time(fn: Callable[[], object]) -> Dict[str, float]:
    """``fn`` captured in a CUDA graph and timed by replays: the GPU's own time, without the
    Python and dispatch cost of launching it (which dominates the small stages)."""
    import triton.testing

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()  # lazy initialisation and autotuning stay out of the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    med, p20, p80 = triton.testing.do_bench(graph.replay, warmup=10, rep=40, quantiles=[0.5, 0.2, 0.8])
    return {"graph_median_ms": med, "graph_p20_ms": p20, "graph_p80_ms": p80}


def copy_bandwidth_gbps(device: str) -> float:
    """Device-to-device copy of 1 GiB (bytes read + written per second): the memory ceiling."""
    n = (2**30 if device == "cuda" else 2**24) // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    ms = _time(lambda: dst.copy_(src), device, tiny=device != "cuda")["median_ms"]
    return 2 * n * 4 / (ms * 1e-3) / 1e9


def _stage_inputs(stage: dict, dtype: torch.dtype, dense: bool, device: str, gen: torch.Generator):
    """(x, weight, kwargs) of one stage in ``dtype`` on ``device``, random but for the filters."""
    C = stage["x_shape"][1]
    k = stage["kernel"]
    x = torch.randn(stage["x_shape"], generator=gen)
    weight = bilinear_weight(C, stage["out_shape"][1], k)
    if dense:  # learned filters: no longer channel-diagonal, the dense (tl.dot / tiled) path
        weight = weight + 0.02 * torch.randn(weight.shape, generator=gen)
    skip = None if stage["skip_shape"] is None else torch.randn(stage["skip_shape"], generator=gen)
    to = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
    kwargs = dict(offset=stage["offset"], size=stage["size"], skip=to(skip), skip_offset=stage["skip_offset"])
    return to(x), to(weight), kwargs


def _bytes_moved(stage: dict, x, weight, kwargs, depthwise: bool, elem: int) -> int:
    N, C, H, W = stage["out_shape"]
    w_elems = weight.shape[0] * weight.shape[2] * weight.shape[3] if depthwise else weight.numel()
    skip_elems = N * C * H * W if kwargs["skip"] is not None else 0
    return elem * (x.numel() + w_elems + skip_elems + N * C * H * W)


def run(args) -> int:
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("stages: torch sees no CUDA device")
        return 1
    started = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32 for every provider
    torch.backends.cuda.matmul.allow_tf32 = False
    from torch import _dynamo

    for knob in ("cache_size_limit", "recompile_limit"):  # one compile per shape and dtype, never a fallback
        if hasattr(_dynamo.config, knob):
            setattr(_dynamo.config, knob, 256)
    size = (64, 64) if args.tiny else (500, 500)
    classes = 3 if args.tiny else 21  # the interpreter's cost grows with the channels
    batches = [1] if args.tiny else [1, 8]
    dtypes = ["float32"] if args.tiny else ["float32", "bfloat16"]
    compile_budget = 0.0 if args.tiny else args.compile_budget
    report = {
        "step": "stages", "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
        "torch": torch.__version__, "input_size": list(size), "model": "fcn8s", "num_classes": classes,
        "timing": "triton.testing.do_bench median [p20, p80], L2 flushed" if device == "cuda" else "perf_counter",
        "triton_autotune": os.environ.get("FCNFAST_TRITON_AUTOTUNE", "1"),
        "copy_gbps": copy_bandwidth_gbps(device), "results": [], "notes": [],
    }
    gen = torch.Generator().manual_seed(0)
    compile_spent = 0.0
    combos = [(b, d, dense) for b in batches for d in dtypes for dense in (False, True)]
    for batch, dtype_name, dense in combos:
        dtype = DTYPES[dtype_name]
        for stage in head_stage_shapes("fcn8s", size, batch, num_classes=classes):
            row_base = dict(stage=stage["name"], batch=batch, dtype=dtype_name, weights="dense" if dense else "bilinear",
                            x_shape=list(stage["x_shape"]), out_shape=list(stage["out_shape"]))
            if time.perf_counter() - started > args.budget:
                report["results"].append(dict(row_base, status="skipped", reason=f"stages budget {args.budget:.0f} s spent"))
                continue
            x, w, kw = _stage_inputs(stage, dtype, dense, device, gen)
            stride = stage["stride"]
            # fp64 of the very inputs the providers get: the error is the computation's alone
            ref64 = upsample_crop_add_reference(x.double(), w.double(), stride,
                                                **dict(kw, skip=None if kw["skip"] is None else kw["skip"].double()))
            scale = max(ref64.abs().max().item(), 1e-12)
            eager_fn = lambda: upsample_crop_add_reference(x, w, stride, **kw)  # noqa: E731
            eager_ms = eager_graph_ms = None
            for provider in PROVIDERS:
                row = dict(row_base, provider=provider)
                try:
                    if provider == "eager":
                        fn = eager_fn
                    elif provider == "compile":
                        if compile_spent >= compile_budget:
                            reason = "dry run" if args.tiny else f"compile time box ({compile_budget:.0f} s) spent"
                            report["results"].append(dict(row, status="skipped", reason=reason))
                            continue
                        compiled = torch.compile(lambda x, w, skip: upsample_crop_add_reference(
                            x, w, stride, offset=kw["offset"], size=kw["size"], skip=skip,
                            skip_offset=kw["skip_offset"]), dynamic=False)
                        t0 = time.perf_counter()
                        compiled(x, w, kw["skip"])
                        if device == "cuda":
                            torch.cuda.synchronize()
                        row["compile_s"] = time.perf_counter() - t0
                        compile_spent += row["compile_s"]
                        fn = lambda: compiled(x, w, kw["skip"])  # noqa: E731
                    else:
                        ok, why = fcnfast.backends.supports(provider, device, dtype)
                        if not ok:
                            report["results"].append(dict(row, status="skipped", reason=why))
                            continue
                        fn = lambda p=provider: fcnfast.upsample_crop_add(x, w, stride, backend=p, **kw)  # noqa: E731
                        row["path"] = "dense" if dense else "depthwise"
                    out = fn()
                    row.update(_time(fn, device, args.tiny))
                    row["status"] = "ok"
                    if device == "cuda":
                        try:
                            row.update(_graph_time(fn))
                            row["graph_gbps"] = 0.0  # filled below, with the bytes
                        except Exception as exc:  # noqa: BLE001 - a provider that cannot be captured
                            row["graph"] = f"not capturable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    row["max_rel_err"] = ((out.double() - ref64).abs().max() / scale).item()
                    depthwise = provider in ("triton", "cuda") and not dense
                    row["bytes"] = _bytes_moved(stage, x, w, kw, depthwise, x.element_size())
                    row["gbps"] = row["bytes"] / (row["median_ms"] * 1e-3) / 1e9
                    row["frac_of_copy_bw"] = row["gbps"] / report["copy_gbps"]
                    if "graph_median_ms" in row:
                        row["graph_gbps"] = row["bytes"] / (row["graph_median_ms"] * 1e-3) / 1e9
                        row["graph_frac_of_copy_bw"] = row["graph_gbps"] / report["copy_gbps"]
                    if provider == "eager":
                        eager_ms, eager_graph_ms = row["median_ms"], row.get("graph_median_ms")
                    elif eager_ms:
                        row["speedup_vs_eager"] = eager_ms / row["median_ms"]
                        if eager_graph_ms and "graph_median_ms" in row:
                            row["graph_speedup_vs_eager"] = eager_graph_ms / row["graph_median_ms"]
                except Exception as exc:  # noqa: BLE001 - one provider failing must not lose the others
                    row.update(status="fail", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}")
                report["results"].append(row)
            report["wall_s"] = time.perf_counter() - started
            _write(args.out, report)
            _print_last(report, stage["name"], batch, dtype_name, dense)
    report["wall_s"] = time.perf_counter() - started
    _write(args.out, report)
    failed = [r for r in report["results"] if r["status"] == "fail"]
    return 1 if failed else 0


def _print_last(report: dict, stage: str, batch: int, dtype: str, dense: bool) -> None:
    rows = [r for r in report["results"] if r["stage"] == stage and r["batch"] == batch and r["dtype"] == dtype
            and r["weights"] == ("dense" if dense else "bilinear")]
    parts = []
    for r in rows:
        if r["status"] == "ok":
            graph = f", graph {r['graph_median_ms'] * 1e3:.0f}us" if "graph_median_ms" in r else ""
            parts.append(f"{r['provider']} {r['median_ms'] * 1e3:.0f}us{graph} ({r['gbps']:.0f} GB/s, "
                         f"err {r['max_rel_err']:.1e})")
        else:
            parts.append(f"{r['provider']} {r['status']}")
    print(f"{stage:14s} b{batch} {dtype:8s} {'dense' if dense else 'bilinear':8s} " + " | ".join(parts), flush=True)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="stages.json path")
    parser.add_argument("--tiny", action="store_true", help="dry run on the CPU at 64x64")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds after which no new configuration starts")
    parser.add_argument("--compile-budget", type=float, default=45.0, help="seconds of torch.compile in all")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
