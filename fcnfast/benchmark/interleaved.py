"""Interleaved rounds (``fcnfast bench --rounds N``): every provider once per round, in one process.

On a shared machine the load changes from minute to minute; timing one provider after another
puts each in a different minute. Here each round calls every provider once, in an order that
rotates from round to round, so every provider meets the same load, and the medians and their
ratios come from the same rounds. The torch.compile providers compile in this process (no time
box: their first call, reported as ``compile_s``), so a run takes as long as they take.

Each round also times one float32 GEMM (the product that set :func:`~.costs.gemm_peak_gflops`): the peak
behind every fraction of the FLOP floor is the best of those and of the one measured first, so a
busy minute lowers it no more than it slows the providers.

The result is a ``bench.json`` dict like :func:`~.runner.run_benchmark`'s, with ``config.rounds``
set, ``config.runs`` equal to it, and each entry's ``times_ms`` in round order.
"""

from __future__ import annotations

import copy
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, List

import torch
from torch import nn

from .config import DTYPES, KINDS, BenchConfig, size_label
from .costs import gemm_gflops, gemm_products, model_flops
from .providers import Calls, dtype_skip_reason, prepare, providers_for
from .runner import add_floor, begin_run, bench_report, finish_entry, ground_truth, memory_entry
from .timing import summarize, sync
from .workload import build_bench_model, make_input

_GEMM = "(gemm)"  # the GEMM's key among a round's calls


def _own_heads(model: nn.Module) -> nn.Module:
    """A shallow copy of ``model`` whose head modules are copies too (weights shared), so that
    one eager provider setting its head backend does not change another's."""
    own = copy.copy(model)
    own._modules = dict(model._modules)
    for name in model.head_names:
        own._modules[name] = copy.copy(getattr(model, name))
    return own


def _rounds(fns: Dict[str, Callable[[], object]], rounds: int, device: str, on_round=None) -> Dict[str, List[float]]:
    """Seconds per call of each of ``fns``, ``rounds`` times, the order rotated by one each round."""
    names = list(fns)
    times: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
        if on_round is not None:
            on_round()
    return times


def run_interleaved(cfg: BenchConfig, progress: bool = True) -> dict:
    """Run ``cfg`` (``cfg.rounds`` set) in interleaved rounds; returns the bench.json dict."""
    from tqdm import tqdm

    started = time.perf_counter()
    cfg, env, gemm_peak = begin_run(cfg)
    if not cfg.rounds:
        raise ValueError("run_interleaved needs cfg.rounds >= 1")
    cfg.runs = cfg.rounds
    device = cfg.device
    base = build_bench_model(cfg.model, cfg.num_classes, cfg.weights, cfg.seed, device)
    combos = [(s, b, d) for s in cfg.sizes for b in cfg.batches for d in cfg.dtypes]
    bar = tqdm(total=len(combos) * (cfg.rounds + cfg.head_runs), desc="fcnfast bench (interleaved)", unit="round",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    workdir = tempfile.mkdtemp(prefix="fcnfast-bench-")
    results: List[dict] = []
    gemm_times: List[float] = []
    try:
        for size, batch, dtype_name in combos:
            results += _combo(cfg, base, size, batch, dtype_name, gemm_times if gemm_peak else None,
                              env.get("gemm_product"), workdir, bar)
    finally:
        bar.close()
        shutil.rmtree(workdir, ignore_errors=True)
    if gemm_peak:
        gemm_peak = max([gemm_peak] + [gemm_gflops(t) for t in gemm_times])
        env["gemm_peak_gflops"], env["gemm_peak_note"] = gemm_peak, "best of one product before and one per round"
        results = [add_floor(r, gemm_peak) for r in results]
    note = (f"interleaved: {cfg.rounds} end-to-end and {cfg.head_runs} head rounds after {cfg.warmup} / "
            f"{cfg.head_warmup} warm-up calls; every provider once per round, the order rotated each round")
    return bench_report(cfg, env, type(base).__name__, [note], time.perf_counter() - started, results)


def _gemm(device: str, product: str) -> Callable[[], object]:
    """The GEMM product named ``product`` (the one that set the peak) on ``device``."""
    return gemm_products(device)[product]


def _combo(cfg: BenchConfig, base: nn.Module, size, batch: int, dtype_name: str, gemm_times, gemm_product,
           workdir: str, bar) -> List[dict]:
    """Every provider's head and end-to-end entries for one (size, batch, dtype), without their
    floor; ``gemm_times`` (a list, or None for no GEMM) gets each end-to-end round's time of the
    ``gemm_product`` GEMM."""
    device, dtype = cfg.device, DTYPES[dtype_name]
    x = make_input(batch, size, cfg.seed, device)
    gt_out, gt_heads = ground_truth(base, x)
    typed = base if dtype == torch.float32 else copy.deepcopy(base).to(dtype)
    combo = dict(size=list(size), batch=batch, dtype=dtype_name)
    entries: Dict[str, Dict[str, dict]] = {}
    ready: Dict[str, Calls] = {}
    first: Dict[str, Dict[str, object]] = {}
    compile_s: Dict[str, float] = {}
    bar.set_postfix_str(f"{size_label(size)} b{batch} {dtype_name}: preparing")
    with torch.inference_mode():
        for provider, skip in providers_for(device, cfg.providers):
            reason = skip or dtype_skip_reason(provider, dtype, device)
            if reason is not None:
                entries[provider] = {k: dict(status="skipped", reason=reason) for k in KINDS}
                continue
            try:
                calls = prepare(provider, base, _own_heads(typed), x, dtype, device, head_inputs=gt_heads,
                                compile_mode=None if cfg.compile_mode == "default" else cfg.compile_mode,
                                workdir=workdir)
                t0 = time.perf_counter()
                first[provider] = {"end_to_end": calls.end_to_end()}  # compiles the compile providers
                sync(device)
                compile_s[provider] = time.perf_counter() - t0
                if calls.head is not None:
                    first[provider]["head"] = calls.head()
                ready[provider] = calls
            except Exception as exc:  # one broken provider must not lose the others' results
                entries[provider] = {k: dict(status="failed", reason=f"{type(exc).__name__}: {exc}") for k in KINDS}
        for kind, rounds, warmup in (("end_to_end", cfg.rounds, cfg.warmup), ("head", cfg.head_runs, cfg.head_warmup)):
            fns = {p: (c.end_to_end if kind == "end_to_end" else c.head) for p, c in ready.items()}
            fns = {p: fn for p, fn in fns.items() if fn is not None}
            for fn in fns.values():
                for _ in range(max(warmup - 1, 0)):  # the first call above was one warm-up
                    fn()
            bar.set_postfix_str(f"{size_label(size)} b{batch} {dtype_name}: {kind} rounds")
            gemm = kind == "end_to_end" and gemm_times is not None
            times = _rounds({**fns, _GEMM: _gemm(device, gemm_product)} if gemm else fns, rounds, device,
                            on_round=lambda: bar.update(1))
            if gemm:
                gemm_times += times.pop(_GEMM)
            for provider, calls in ready.items():
                row = entries.setdefault(provider, {})
                if provider not in fns:
                    row[kind] = dict(status="skipped", reason=calls.info.get("head", "no head-only call"))
                    continue
                row[kind] = dict(status="ok", output=first[provider][kind], warmup=warmup, **calls.info,
                                 **summarize(times[provider], batch))
                if kind == "end_to_end" and provider in compile_s:
                    row[kind]["first_call_s"] = compile_s[provider]
                row[kind].update(memory_entry(cfg, calls, fns[provider], batch))
    flops = model_flops(cfg.model, size, batch, cfg.num_classes)
    reference_median: Dict[str, float] = {}
    out = []
    for provider, _ in providers_for(device, cfg.providers):
        for kind in KINDS:
            entry = dict(combo, kind=kind, provider=provider, **entries[provider][kind])
            out.append(finish_entry(entry, gt_out, reference_median, flops[kind], None))
    return out
