"""The workload validate.sh runs under compute-sanitizer: every GPU backend x fp32/fp16/bf16 x
dense/depthwise x forward/backward, at small FCN head shapes, each result checked against the
fp64 reference on the CPU.

Inputs reach the GPU by host-to-device copies (initcheck tracks those as initialised memory).
Run it with FCNFAST_CUDA_SYNC_CHECK=1 so a fault is reported at the launch that caused it.
``--tiny`` (the dry run): the same loop on the CPU with the backends that run there.
Prints one line per case and exits 1 if any case failed.
"""

from __future__ import annotations

import argparse
import sys

import torch

import fcnfast
from fcnfast.reference import bilinear_weight, upsample_crop_add_reference

# (name, N, C, Hin, Win, k, s, offset, size, skip_offset, skip_hw): small FCN-8s stages
SHAPES = [
    ("upscore2", 1, 21, 5, 6, 4, 2, 0, None, 5, (22, 24)),
    ("upscore_pool4", 2, 21, 7, 5, 4, 2, 0, None, 9, (26, 22)),
    ("upscore8", 1, 21, 8, 9, 16, 8, 31, (19, 23), None, None),
]
# the dry run: the same code paths at interpreter-friendly sizes (k=8 s=4 stands in for upscore8)
TINY_SHAPES = [("upscore2", 1, 3, 3, 4, 4, 2, 0, None, 5, (18, 20)), ("upscore8", 1, 3, 3, 3, 8, 4, 5, (5, 6), None, None)]
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def _case(shape, dtype, dense, device, gen):
    name, N, C, Hin, Win, k, s, offset, size, skip_offset, skip_hw = shape
    x = torch.randn(N, C, Hin, Win, generator=gen, dtype=torch.float64)
    w = bilinear_weight(C, C, k, torch.float64)
    if dense:
        w = w + 0.05 * torch.randn(w.shape, generator=gen, dtype=torch.float64)
    kw = {"offset": offset, "size": size, "bias": torch.randn(C, generator=gen, dtype=torch.float64)}
    if skip_offset is not None:
        kw.update(skip=torch.randn(N, C, *skip_hw, generator=gen, dtype=torch.float64), skip_offset=skip_offset)
    host = (x, w, kw)
    # host-to-device copies of host tensors already in the target dtype
    to = lambda t: t.to(dtype).to(device)  # noqa: E731
    dev = (to(x), to(w), {k_: (to(v) if isinstance(v, torch.Tensor) else v) for k_, v in kw.items()})
    return name, s, host, dev


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double().cpu() - ref).abs().max() / max(ref.abs().max().item(), 1.0)).item()


def run(tiny: bool) -> int:
    device = "cpu" if tiny else "cuda"
    gen = torch.Generator().manual_seed(0)
    failures = 0
    ran = 0
    for backend in ("triton", "cuda"):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            ok, why = fcnfast.backends.supports(backend, device, dtype)
            if not ok:
                print(f"skip {backend} {dtype}: {why}")
                continue
            for shape in TINY_SHAPES if tiny else SHAPES:
                for dense in (True, False):
                    name, s, (x64, w64, kw64), (x, w, kw) = _case(shape, dtype, dense, device, gen)
                    path = "dense" if dense else "depthwise"
                    label = f"{backend} {str(dtype)[6:]} {name} {path}"
                    try:
                        ref_leaves = [x64.requires_grad_(), w64.requires_grad_()]
                        ref = upsample_crop_add_reference(x64, w64, s, **kw64)
                        grad64 = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
                        ref.backward(grad64)
                        x.requires_grad_()
                        w.requires_grad_()
                        out = fcnfast.upsample_crop_add(x, w, s, backend=backend, depthwise=not dense, **kw)
                        out.backward(grad64.to(dtype).to(device))  # an H2D copy, not a fill kernel
                        if device == "cuda":
                            torch.cuda.synchronize()
                        errs = {"out": _rel(out, ref.detach()), "grad_x": _rel(x.grad, ref_leaves[0].grad),
                                "grad_w": _rel(w.grad, ref_leaves[1].grad)}
                        bad = {k: v for k, v in errs.items() if not v <= TOL[dtype]}
                        ran += 1
                        if bad:
                            failures += 1
                            print(f"FAIL {label}: relative errors {bad} > {TOL[dtype]}")
                        else:
                            print(f"ok   {label}: max rel err {max(errs.values()):.2g}")
                    except Exception as exc:  # noqa: BLE001 - report and go on to the next case
                        failures += 1
                        print(f"FAIL {label}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    print(f"smoke: {ran} cases ran, {failures} failed")
    return 1 if failures or not ran else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="CPU dry run (Triton interpreted)")
    args = parser.parse_args(argv)
    return run(args.tiny)


if __name__ == "__main__":
    sys.exit(main())
