"""``fcnfast bench``: per-image latency of FCN-8s per provider, head-only and end-to-end.

    fcnfast bench                                   # 500x500, batch 1, float32, every provider here
    fcnfast bench --size 500 1024 --batch 1 8 --dtype float16 bfloat16 --out results/h100
    fcnfast bench --providers reference fcnfast-optimize --runs 5

Writes OUT/bench.json (device, versions, git commit, config, results) and OUT/bench.png.
"""

from __future__ import annotations

import argparse
import sys

from fcnfast.errors import UserError
from fcnfast.models.registry import DEFAULT_MODEL, MODEL_NAMES_TEXT

PROVIDER_HELP = (
    "reference (eager, backend=reference; always run: the baseline), compile (torch.compile of the "
    "reference, time-boxed), compile-freezing (the same with inductor freezing), onnxruntime (ONNX Runtime "
    "on fcnfast.export_onnx's export; CPU, float32, end to end), fcnfast-cpp / fcnfast-triton / fcnfast-cuda "
    "(fused heads), fcnfast-optimize (fcnfast.optimize). Default: every provider that runs on the device"
)


def _split(values):
    """Repeated and comma-separated values as one flat list: ``["1,8", "16"]`` -> ``["1", "8", "16"]``."""
    out = []
    for value in values or []:
        out += [v for v in str(value).replace(",", " ").split() if v]
    return out


def register(subparsers) -> argparse.ArgumentParser:
    from fcnfast.benchmark.config import COMPILE_MODES, DEFAULT_DTYPE, DTYPES

    parser = subparsers.add_parser(
        "bench",
        help="latency of FCN per provider (head-only and end-to-end), table + JSON + PNG",
        description=(
            "Time the FCN head (its fused upsampling stages, fed with the intermediate tensors of one "
            "backbone run) and the whole forward, separately, for each provider; report median and "
            "p10/p90 ms per image, the speedup over the eager reference and the largest difference "
            "from the float32 reference output. Random weights unless --weights is given."
        ),
    )
    parser.add_argument("--size", nargs="+", action="extend", metavar="N|HxW",
                        help="input sizes as HxW (height x width, e.g. 375x500) or N for NxN; repeatable or "
                             "comma-separated (default 500); reports write sizes as HxW too")
    parser.add_argument("--batch", nargs="+", action="extend", metavar="B", help="batch sizes (default 1)")
    parser.add_argument("--dtype", nargs="+", action="extend", metavar="DTYPE",
                        help=f"{', '.join(DTYPES)} (default {DEFAULT_DTYPE})")
    parser.add_argument("--runs", type=int, default=None,
                        help="end-to-end timed runs (default: 3 on CPU, where a forward takes seconds; 50 on GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="end-to-end warm-up runs (default: 1 on CPU, 10 on GPU)")
    parser.add_argument("--head-runs", type=int, default=None, help="head-only timed runs (default: 20 on CPU, 200 on GPU)")
    parser.add_argument("--head-warmup", type=int, default=None, help="head-only warm-up runs (default: 3 on CPU, 20 on GPU)")
    parser.add_argument("--weights", default=None, metavar="W", help="checkpoint to load (default: random weights)")
    parser.add_argument("--model", default=None,
                        help=f"{MODEL_NAMES_TEXT} (default: the checkpoint's, else {DEFAULT_MODEL})")
    parser.add_argument("--num-classes", type=int, default=None, help="classes (default: the checkpoint's, else the model's)")
    parser.add_argument("--providers", nargs="+", action="extend", metavar="P", help=PROVIDER_HELP)
    parser.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda")
    parser.add_argument("--compile-timeout", type=float, default=None, metavar="S",
                        help="time box of the torch.compile provider in seconds (default: 120 on CPU, 900 on GPU; 0 = none)")
    parser.add_argument("--compile-mode", default=None, metavar="MODE",
                        help=f"torch.compile mode of the compile provider: {', '.join(COMPILE_MODES)} "
                             "(default: max-autotune on GPU, default on CPU)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="S",
                        help="skip a provider that would end after S seconds of run time, estimated from the "
                             "reference's cost (default: 150 on CPU, none on GPU; 0 = none)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch.set_num_threads(N) for the run (default: torch's default, all cores)")
    parser.add_argument("--rounds", type=int, default=None, metavar="N",
                        help="interleaved timing: N rounds, each calling every provider once (order rotated per "
                             "round), all in this process (torch.compile without its time box); --runs and "
                             "--time-limit are then unused, --head-runs is the number of head rounds")
    parser.add_argument("--memory", action="store_true",
                        help="also measure each provider's peak tensor memory per image (one more call each)")
    parser.add_argument("--no-gemm-peak", action="store_true",
                        help="skip the float32 GEMM peak measurement (and the fraction of the FLOP floor)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and input (default 0)")
    parser.add_argument("--out", default="fcnfast-bench", metavar="DIR",
                        help="output directory for bench.json and bench.png (default ./fcnfast-bench)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from fcnfast.benchmark import BenchConfig, format_table, parse_size, run_benchmark, run_interleaved, write_report
    from fcnfast.models import checkpoint_model

    from ._checks import check_backend, check_output_dir

    try:
        lists = dict(sizes=[parse_size(s) for s in _split(args.size)], batches=[int(b) for b in _split(args.batch)],
                     dtypes=_split(args.dtype), providers=_split(args.providers))
        given = {key: values for key, values in lists.items() if values}  # the others: BenchConfig's defaults
        # A checkpoint says which model and how many classes it holds.
        model, num_classes = args.model or DEFAULT_MODEL, args.num_classes
        if args.weights:
            model, num_classes = checkpoint_model(args.weights, args.model, args.num_classes)[:2]
        cfg = BenchConfig(
            **given, model=model, num_classes=num_classes, weights=args.weights, device=args.device,
            runs=args.runs, warmup=args.warmup, head_runs=args.head_runs, head_warmup=args.head_warmup,
            compile_timeout=args.compile_timeout, compile_mode=args.compile_mode, time_limit=args.time_limit,
            seed=args.seed, threads=args.threads, rounds=args.rounds, memory=args.memory,
            gemm_peak=not args.no_gemm_peak,
        ).resolved()
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from exc
    check_backend(None, torch.device(cfg.device))  # FCNFAST_BACKEND, which fcnfast-optimize follows
    check_output_dir(args.out, "--out")  # before the measurement, which takes minutes
    if not cfg.weights:
        print("fcnfast bench: random weights (no --weights): timings are what matter, not the predictions",
              file=sys.stderr)
    try:
        run = run_interleaved if cfg.rounds else run_benchmark
        report = run(cfg, progress=not args.no_progress)
    except ValueError as exc:  # e.g. a checkpoint that does not fit
        raise UserError(str(exc)) from exc
    print(format_table(report))
    json_path, png_path, why = write_report(report, args.out)
    print(f"wrote {json_path}")
    print(f"wrote {png_path}" if png_path else f"no plot: {why}")
    return 0
