"""The benchmark run behind ``fcnfast bench``: every (size, batch, dtype) x provider, head and
end to end, each compared with the float32 reference output; returns the ``bench.json`` dict.

A provider that fails or would overrun ``--time-limit`` becomes a row with a status and a reason;
it never loses the others' results.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..environment import load_average, probe
from .compile_worker import bench_compile
from .config import DTYPES, KINDS, BenchConfig, size_label
from . import costs
from .costs import gemm_peak_gflops, model_flops, peak_tensor_bytes
from .heads import HeadInputs, capture_head_inputs
from .providers import COMPILE_PROVIDERS, PROVIDER_REFERENCE, Calls, dtype_skip_reason, prepare, providers_for
from .timing import summarize, time_fn_with_output
from .workload import build_bench_model, make_input


def max_abs_diff(out: Tensor, ref: Tensor) -> float:
    """Largest absolute difference of ``out`` from ``ref``, both compared in float32."""
    return float((out.detach().to(torch.float32) - ref.to(torch.float32)).abs().max()) if out.numel() else 0.0


def run_benchmark(cfg: BenchConfig, progress: bool = True) -> dict:
    """Run the benchmark described by ``cfg`` (a progress bar on stderr unless ``progress`` is
    False); returns the bench.json dict. Raises what :meth:`BenchConfig.resolved` raises for a bad
    config, and ValueError / FileNotFoundError for a checkpoint that cannot be loaded."""
    from tqdm import tqdm

    started = time.perf_counter()
    cfg, env, gemm_peak = begin_run(cfg)
    device = cfg.device
    provider_list = providers_for(device, cfg.providers)
    combos = [(s, b, d) for s in cfg.sizes for b in cfg.batches for d in cfg.dtypes]
    results: List[dict] = []
    notes: List[str] = []

    def elapsed() -> float:
        return time.perf_counter() - started

    base = build_bench_model(cfg.model, cfg.num_classes, cfg.weights, cfg.seed, device)
    model_name = type(base).__name__
    bar = tqdm(total=len(combos) * len(provider_list), desc="fcnfast bench", unit="provider",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    workdir = tempfile.mkdtemp(prefix="fcnfast-bench-")
    gt_cache: Dict[tuple, Tuple[Tensor, HeadInputs]] = {}
    forward_s: Dict[tuple, float] = {}  # the reference's end-to-end median (s), per (size, batch)
    models_by_dtype: Dict[str, nn.Module] = {"float32": base}
    try:
        for size, batch, dtype_name in combos:
            dtype = DTYPES[dtype_name]
            x = make_input(batch, size, cfg.seed, device)
            key = (size, batch)
            combo = dict(size=list(size), batch=batch, dtype=dtype_name)
            label = f"{size_label(size)} b{batch}"
            reference_median: Dict[str, float] = {}

            if dtype_name not in models_by_dtype:
                models_by_dtype[dtype_name] = copy.deepcopy(base).to(dtype)
            model = models_by_dtype[dtype_name]

            # Ground truth: the float32 reference output (TF32 off) and the head inputs it consumed.
            fresh_gt = key not in gt_cache
            if fresh_gt:
                bar.set_postfix_str(f"{label}: float32 reference output")
                gt_cache[key] = ground_truth(base, x)
            gt_out, gt_heads = gt_cache[key]

            for provider, skip_reason in provider_list:
                bar.set_postfix_str(f"{label} {dtype_name}: {provider}")
                reason = skip_reason or dtype_skip_reason(provider, dtype, device)
                run_cfg = cfg
                if reason is None and provider not in (PROVIDER_REFERENCE, *COMPILE_PROVIDERS) and cfg.time_limit:
                    run_cfg, reason = _fit_time_limit(cfg, forward_s.get(key), cfg.time_limit - elapsed())
                if reason is not None:
                    for kind in KINDS:
                        results.append(dict(combo, kind=kind, provider=provider, status="skipped", reason=reason))
                    bar.update(1)
                    continue
                # On the CPU the ground-truth forward was the reference's first warm-up run.
                prewarmed = (provider == PROVIDER_REFERENCE and fresh_gt and dtype == torch.float32
                             and not device.startswith("cuda"))
                try:
                    if provider in COMPILE_PROVIDERS:
                        entries = bench_compile(cfg, provider, size, batch, dtype_name, x, gt_heads, workdir,
                                                remaining=(cfg.time_limit - elapsed()) if cfg.time_limit else None)
                    else:
                        entries = _bench_in_process(run_cfg, provider, base, model, x, gt_heads, dtype, batch,
                                                    prewarmed=prewarmed, workdir=workdir)
                except Exception as exc:  # one broken provider must not lose the others' results
                    entries = {kind: dict(status="failed", reason=f"{type(exc).__name__}: {exc}") for kind in KINDS}
                if provider == PROVIDER_REFERENCE and entries["end_to_end"].get("status") == "ok":
                    forward_s[key] = entries["end_to_end"]["median_ms"] / 1e3
                if run_cfg is not cfg:
                    for kind in KINDS:
                        entries[kind]["note"] = (f"{run_cfg.runs} run(s) after {run_cfg.warmup} warm-up to fit "
                                                 f"--time-limit {cfg.time_limit:.0f} s")
                flops = model_flops(cfg.model, size, batch, cfg.num_classes)
                for kind in KINDS:
                    results.append(finish_entry(dict(combo, kind=kind, provider=provider, **entries[kind]), gt_out,
                                                reference_median, flops[kind], gemm_peak))
                bar.update(1)
    finally:
        bar.close()
        shutil.rmtree(workdir, ignore_errors=True)
    if any("--time-limit" in r.get("reason", "") for r in results):
        notes.append(f"some providers were skipped to stay within --time-limit {cfg.time_limit:.0f} s")
    return bench_report(cfg, env, model_name, notes, elapsed(), results)


def begin_run(cfg: BenchConfig) -> Tuple[BenchConfig, dict, Optional[float]]:
    """(``cfg`` resolved, the environment, the GEMM peak or None), torch's threads set as asked."""
    cfg = cfg.resolved()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    env = probe(cfg.device)
    return cfg, env, measure_gemm_peak(cfg, env)


def bench_report(cfg: BenchConfig, env: dict, model_class: str, notes: List[str], wall_s: float,
                 results: List[dict]) -> dict:
    """The bench.json dict of a finished run (the load average at its end added to ``env``)."""
    cfg_dict = dataclasses.asdict(cfg)
    cfg_dict["sizes"] = [list(s) for s in cfg.sizes]
    cfg_dict["model_class"] = model_class
    cfg_dict["weights"] = cfg.weights or f"random (fcnfast.models.init.random_init_, seed {cfg.seed})"
    end_load = load_average()
    if end_load is not None:
        env["load_average_end"] = end_load
    return {"benchmark": "fcnfast bench", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": env,
            "config": cfg_dict, "notes": notes, "wall_s": wall_s, "results": results}


def measure_gemm_peak(cfg: BenchConfig, env: dict) -> Optional[float]:
    """The float32 GEMM peak (GFLOP/s) of this run, recorded in ``env``; None when ``cfg`` says not to."""
    if not cfg.gemm_peak:
        return None
    peak, product = gemm_peak_gflops(cfg.device)
    env["gemm_peak_gflops"], env["gemm_size"], env["gemm_product"] = peak, costs.GEMM_SIZE, product
    return peak


def finish_entry(entry: dict, gt_out: Tensor, reference_median: Dict[str, float], flops: int,
                 gemm_peak: Optional[float]) -> dict:
    """``entry`` with its output turned into ``max_abs_diff``, its speedup over the reference
    (whose median it records when it is the reference's), and its FLOPs, floor (FLOPs at the GEMM
    peak) and fraction of that floor."""
    out = entry.pop("output", None)
    if out is not None:
        entry["max_abs_diff"] = max_abs_diff(out, gt_out)
        entry["max_abs_ref"] = float(gt_out.abs().max())
    if entry.get("status") != "ok":
        return entry
    kind = entry["kind"]
    if entry["provider"] == PROVIDER_REFERENCE:
        reference_median[kind] = entry["median_ms"]
    if kind in reference_median:
        entry["speedup"] = reference_median[kind] / entry["median_ms"]
    entry["flops"] = flops
    return add_floor(entry, gemm_peak)


def add_floor(entry: dict, gemm_peak: Optional[float]) -> dict:
    """A timed ``entry`` (with ``flops``) with its floor (the FLOPs at ``gemm_peak`` GFLOP/s) and
    its fraction of that floor; unchanged without a peak."""
    if gemm_peak and entry.get("status") == "ok":
        entry["floor_ms"] = entry["flops"] / (gemm_peak * 1e6)
        entry["floor_fraction"] = entry["floor_ms"] / entry["median_ms"]
    return entry


def _fit_time_limit(cfg: BenchConfig, forward_s: Optional[float], remaining: float):
    """(config with end-to-end runs/warm-up cut to fit ``remaining`` seconds, None) or (cfg, why skipped).

    A provider's cost is estimated as its end-to-end forwards at the reference's forward time,
    plus a few seconds for the head runs and (for optimize) the weight copy.
    """
    if forward_s is None:
        return cfg, None
    forwards = int((remaining - 5.0) // max(forward_s, 1e-6))
    if forwards >= cfg.runs + cfg.warmup:
        return cfg, None
    if forwards < 1:
        return cfg, (f"would end after --time-limit {cfg.time_limit:.0f} s ({max(remaining, 0):.0f} s left, one "
                     f"forward takes ~{forward_s:.0f} s)")
    warmup = min(cfg.warmup, 1) if forwards >= 2 else 0
    return dataclasses.replace(cfg, runs=forwards - warmup, warmup=warmup), None


def ground_truth(base: nn.Module, x: Tensor) -> Tuple[Tensor, HeadInputs]:
    """float32 reference output with TF32 off, and the head inputs captured from the same forward."""
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    base.set_backend("reference")
    get, remove = capture_head_inputs(base)
    try:
        with torch.inference_mode():
            out = base(x)
        heads = get()
    finally:
        remove()
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return out, heads


def _bench_in_process(cfg: BenchConfig, provider: str, base: nn.Module, typed: nn.Module, x: Tensor,
                      gt_heads: HeadInputs, dtype: torch.dtype, batch: int, prewarmed: bool,
                      workdir: str) -> Dict[str, dict]:
    """``{kind: entry}`` of an in-process provider; ``prewarmed``: this exact forward already ran
    once (it made the ground truth), so it counts as the first end-to-end warm-up run."""
    entries: Dict[str, dict] = {}
    with torch.inference_mode():
        calls = prepare(provider, base, typed, x, dtype, cfg.device, head_inputs=gt_heads, workdir=workdir)
        if calls.head is None:
            entries["head"] = dict(status="skipped", reason=calls.info.get("head", "no head-only call"))
        else:
            times, out = time_fn_with_output(calls.head, cfg.head_runs, cfg.head_warmup, cfg.device)
            entries["head"] = dict(status="ok", output=out, warmup=cfg.head_warmup, **calls.info,
                                   **summarize(times, batch), **memory_entry(cfg, calls, calls.head, batch))
        warmup = cfg.warmup - 1 if prewarmed and cfg.warmup > 0 else cfg.warmup
        times, out = time_fn_with_output(calls.end_to_end, cfg.runs, warmup, cfg.device)
        entries["end_to_end"] = dict(status="ok", output=out, warmup=cfg.warmup, **calls.info,
                                     **summarize(times, batch), **memory_entry(cfg, calls, calls.end_to_end, batch))
    return entries


def memory_entry(cfg: BenchConfig, calls: Calls, fn, batch: int) -> dict:
    """``{"peak_bytes_per_image": ...}`` of one more call of ``fn`` (one of ``calls``) when
    ``cfg.memory`` and the provider's memory is torch tensors, else {}."""
    if not cfg.memory:
        return {}
    if not calls.tensor_memory:
        return {"peak_bytes_note": "its memory is not torch tensors the profiler sees: not measured"}
    return {"peak_bytes_per_image": peak_tensor_bytes(fn, cfg.device) / batch}
