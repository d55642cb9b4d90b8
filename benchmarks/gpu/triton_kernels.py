"""Step ``kernels`` of validate.sh: what Triton's autotuner chose, and what each choice costs.

Runs every FCN-8s head stage at 500x500 (batch 1 and 8, float32 and bfloat16) forward on the
depthwise (bilinear) and dense paths and backward (grad_x of both paths, grad_w of the dense
one) with autotuning on, then reads each kernel's autotune cache and compiled variants: per
kernel and autotune key the chosen configuration with its registers, spills and shared memory,
and per kernel every compiled variant. Writes triton_kernels.json after each stage group.
``--tiny``: the dry run (interpreter: no autotuning, no compiled kernels to read).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

import fcnfast
from fcnfast.benchmark import head_stage_shapes
from fcnfast.reference import bilinear_weight

KERNELS = ("_upsample_crop_add_fwd_kernel", "_upsample_crop_add_fwd_depthwise_kernel",
           "_upsample_crop_add_bwd_input_kernel", "_upsample_crop_add_bwd_input_depthwise_kernel",
           "_upsample_crop_add_bwd_weight_kernel")


def _compiled_variants(jit) -> list:
    """Every compiled binary of a JITFunction: its constexprs, warps, stages, registers, spills."""
    variants = []
    for cache in jit.device_caches.values():
        for kernel in cache[0].values():
            kernel = kernel.result() if hasattr(kernel, "result") else kernel
            kernel._init_handles()  # loads the binary: fills n_regs / n_spills
            consts = {jit.arg_names[k[0]]: v for k, v in kernel.src.constants.items() if len(k) == 1}
            variants.append({
                "constexprs": {k: v for k, v in consts.items() if isinstance(v, (bool, int, float, str))},
                "num_warps": kernel.metadata.num_warps, "num_stages": kernel.metadata.num_stages,
                "registers": kernel.n_regs, "spills": kernel.n_spills, "shared_bytes": kernel.metadata.shared,
            })
    return variants


def _matches(variant: dict, config) -> bool:
    consts = variant["constexprs"]
    return (variant["num_warps"] == config.num_warps and variant["num_stages"] == config.num_stages
            and all(consts.get(k) == v for k, v in config.kwargs.items()))


def inspect_kernels() -> dict:
    import triton

    from fcnfast.kernels import upsample_crop_add as K

    report = {}
    for name in KERNELS:
        tuner = getattr(K, name)
        if not isinstance(tuner, triton.runtime.Autotuner):
            report[name] = {"status": "skipped: not autotuned here (Triton interpreter)"}
            continue
        variants = _compiled_variants(tuner.fn)
        keys = []
        for key, config in tuner.cache.items():
            named = dict(zip(tuner.keys, key))
            chosen = [v for v in variants if _matches(v, config)]
            keys.append({
                "key": {k: (v if isinstance(v, (bool, int, float)) else str(v)) for k, v in named.items()},
                "dtypes": [str(v) for v in key[len(tuner.keys):]],
                "config": dict(config.kwargs), "num_warps": config.num_warps, "num_stages": config.num_stages,
                "compiled": [{k: v[k] for k in ("constexprs", "registers", "spills", "shared_bytes")} for v in chosen],
            })
        report[name] = {"status": "ok", "n_configs": len(tuner.configs), "keys": keys, "variants": variants,
                        "max_spills": max((v["spills"] for v in variants), default=0),
                        "max_registers": max((v["registers"] for v in variants), default=0)}
    return report


def exercise(tiny: bool, budget: float, started: float, on_group_done) -> list:
    """Run every stage forward and backward so the autotuner picks a config for each key;
    ``on_group_done(exercised)`` after each (dtype, batch) group."""
    device = "cpu" if tiny else "cuda"
    size, batches = ((32, 32), [1]) if tiny else ((500, 500), [1, 8])
    classes = 2 if tiny else 21  # the interpreter's cost grows with the channels
    dtypes = [torch.float32] if tiny else [torch.float32, torch.bfloat16]
    done = []
    gen = torch.Generator().manual_seed(0)
    for dtype in dtypes:
        for batch in batches:
            if time.perf_counter() - started > budget:
                done.append({"batch": batch, "dtype": str(dtype), "status": f"skipped: budget {budget:.0f} s spent"})
                continue
            stages = head_stage_shapes("fcn8s", size, batch, num_classes=classes)
            for stage in stages[:1] if tiny else stages:  # the dry run: one stage shows the path works
                C = stage["x_shape"][1]
                for dense in (False, True):
                    x = torch.randn(stage["x_shape"], generator=gen).to(device, dtype).requires_grad_()
                    w = bilinear_weight(C, C, stage["kernel"])
                    if dense:
                        w = w + 0.02 * torch.randn(w.shape, generator=gen)
                    w = w.to(device, dtype).requires_grad_(dense)
                    skip = None if stage["skip_shape"] is None else torch.randn(stage["skip_shape"], generator=gen).to(device, dtype)
                    y = fcnfast.upsample_crop_add(x, w, stage["stride"], offset=stage["offset"], size=stage["size"],
                                                  skip=skip, skip_offset=stage["skip_offset"], backend="triton")
                    y.backward(torch.randn(y.shape, generator=gen).to(device, dtype))
            if device == "cuda":
                torch.cuda.synchronize()
            done.append({"batch": batch, "dtype": str(dtype), "status": "ok",
                         "after_s": round(time.perf_counter() - started, 1)})
            on_group_done(done)
    return done


def _write(path: str, report: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true", help="dry run on the CPU (interpreter)")
    parser.add_argument("--budget", type=float, default=float(os.environ.get("STEP_LIMIT", 60)) - 10,
                        help="seconds after which no new (dtype, batch) group starts")
    args = parser.parse_args(argv)
    device = "cpu" if args.tiny else "cuda"
    ok, why = fcnfast.backends.supports("triton", device, torch.float32)
    if not ok:
        print(f"kernels: triton cannot run on {device}: {why}")
        return 1
    started = time.perf_counter()
    report = {"step": "kernels", "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
              "autotune": os.environ.get("FCNFAST_TRITON_AUTOTUNE", "1")}

    def save(exercised, final=False):
        # the whole report after every group: a run stopped by its time limit keeps what it tuned
        report.update(exercised=exercised, kernels=inspect_kernels(), complete=final,
                      wall_s=time.perf_counter() - started)
        _write(args.out, report)

    save(exercise(args.tiny, args.budget, started, save), final=True)
    kernels = report["kernels"]
    for name, info in kernels.items():
        if info["status"] != "ok":
            print(f"{name}: {info['status']}")
            continue
        print(f"{name}: {len(info['keys'])} keys, {len(info['variants'])} variants, "
              f"max {info['max_registers']} registers, max {info['max_spills']} spill bytes")
        for entry in info["keys"]:
            regs = [c["registers"] for c in entry["compiled"]]
            print(f"   key {entry['key']} {entry['dtypes']}: {entry['config']} w{entry['num_warps']} "
                  f"s{entry['num_stages']} regs {regs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
