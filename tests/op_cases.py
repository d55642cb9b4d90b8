"""Shared inputs and comparisons for the op tests: one place builds cases, one place judges them."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from fcnfast.backends import triton_interpreted
from fcnfast.geometry import full_transposed_size
from fcnfast.reference import bilinear_weight, upsample_crop_add_reference

INTERPRETED = triton_interpreted()


def cpu_isas():
    """Instruction sets of the C++ kernels this CPU runs (generic, avx2, avx512); [] without them."""
    try:
        from fcnfast import _C
    except ImportError:
        return []
    return list(_C.available_isas())


@contextmanager
def use_cpu_isa(name: str):
    """Run the C++ kernels with instruction set ``name`` inside the block (process-wide)."""
    from fcnfast import _C

    before = _C.current_isa()
    _C.set_isa(name)
    try:
        yield
    finally:
        _C.set_isa(before)


def rank1_filters(weight: torch.Tensor) -> bool:
    """Whether the C++ depthwise task takes its rank-1 path for this channel-diagonal weight."""
    from fcnfast import _C
    from fcnfast.backends._abi import DTYPE_CODES

    filters = torch.stack([weight[c, c] for c in range(weight.shape[0])]).contiguous()
    return _C.rank1_filters(DTYPE_CODES[filters.dtype], filters.data_ptr(), *filters.shape)

# Error floors (relative to the output's magnitude) added to the 2x-of-PyTorch rule.
FLOORS = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


@dataclass(frozen=True)
class Case:
    N: int
    Cin: int
    Cout: int
    Hin: int
    Win: int
    k: Tuple[int, int]
    s: Tuple[int, int]
    offset: Tuple[int, int] = (0, 0)
    size: Optional[Tuple[int, int]] = None
    skip_margin: Optional[Tuple[int, int]] = None  # skip_offset; None = no skip
    bias: bool = False
    bilinear: bool = False
    diagonal: bool = False  # random filters on the channel diagonal, zero off it (depthwise path)

    @property
    def id(self) -> str:
        parts = [f"n{self.N}", f"c{self.Cin}x{self.Cout}", f"in{self.Hin}x{self.Win}", f"k{self.k[0]}x{self.k[1]}",
                 f"s{self.s[0]}x{self.s[1]}", f"o{self.offset[0]},{self.offset[1]}", f"size{self.out_size}"]
        if self.skip_margin is not None:
            parts.append(f"skip{self.skip_margin[0]},{self.skip_margin[1]}")
        if self.bias:
            parts.append("bias")
        if self.bilinear:
            parts.append("bilinear")
        if self.diagonal:
            parts.append("diagonal")
        return "-".join(parts)

    @property
    def out_size(self) -> Tuple[int, int]:
        if self.size is not None:
            return self.size
        fh, fw = full_transposed_size(self.Hin, self.Win, self.k[0], self.k[1], self.s[0], self.s[1])
        return fh - self.offset[0], fw - self.offset[1]

    def interpretable(self, max_kernel: int = 32) -> bool:
        """Cheap enough for the Triton interpreter, whose cost grows with the number of programs
        (s^2 phases, k^2 weight taps): <= 64x64 outputs, few channels, kernels <= max_kernel.
        Larger kernels are covered by the cpp backend and the CUDA host emulation on CPU, and
        run for real on a GPU."""
        H, W = self.out_size
        return H * W <= 64 * 64 and self.Cin * self.Cout <= 64 and max(self.k) <= max_kernel


def make_inputs(case: Case, dtype=torch.float32, device="cpu", layout="contiguous", seed=0):
    """(x, weight, kwargs) for ``case``; layout is contiguous, channels_last or sliced (a strided view)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(case.N, case.Cin, case.Hin, case.Win, generator=g, dtype=torch.float64)
    if case.bilinear:
        assert case.Cin == case.Cout and case.k[0] == case.k[1]
        weight = bilinear_weight(case.Cin, case.Cout, case.k[0], torch.float64)
    elif case.diagonal:
        assert case.Cin == case.Cout
        weight = torch.zeros(case.Cin, case.Cout, *case.k, dtype=torch.float64)
        for c in range(case.Cin):
            weight[c, c] = torch.randn(*case.k, generator=g, dtype=torch.float64)
    else:
        weight = torch.randn(case.Cin, case.Cout, *case.k, generator=g, dtype=torch.float64) / (case.Cin ** 0.5)
    kwargs = {"offset": case.offset, "size": case.size}
    if case.skip_margin is not None:
        H, W = case.out_size
        sy, sx = case.skip_margin
        skip = torch.randn(case.N, case.Cout, sy + H + 2, sx + W + 3, generator=g, dtype=torch.float64)
        kwargs.update(skip=skip, skip_offset=case.skip_margin)
    if case.bias:
        kwargs["bias"] = torch.randn(case.Cout, generator=g, dtype=torch.float64)
    # the layout is made on the target device: copying a strided view across devices densifies it
    x = to_layout(x.to(dtype=dtype, device=device), layout)
    weight = weight.to(dtype=dtype, device=device)
    for key in ("skip", "bias"):
        if key in kwargs:
            value = kwargs[key].to(dtype=dtype, device=device)
            kwargs[key] = to_layout(value, layout) if key == "skip" else value
    return x, weight, kwargs


def to_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "contiguous":
        return t.contiguous()
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "sliced":  # same values, read through a strided view of a bigger tensor
        big = torch.zeros(t.shape[0], t.shape[1] + 1, t.shape[2] + 2, t.shape[3] * 2, dtype=t.dtype, device=t.device)
        view = big[:, 1:, 2:, ::2]
        view.copy_(t)
        return view
    raise ValueError(layout)


def assert_matches_reference(out: torch.Tensor, x, weight, stride, kwargs, what="output"):
    """Kernel error vs an fp64 reference within 2x PyTorch's own error in the same dtype (+ a floor)."""
    to64 = {k: (v.double().cpu() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    ref64 = upsample_crop_add_reference(x.double().cpu(), weight.double().cpu(), stride, **to64)
    assert out.shape == ref64.shape, f"{what}: shape {tuple(out.shape)} != reference {tuple(ref64.shape)}"
    assert out.dtype == x.dtype and out.is_contiguous()
    if out.numel() == 0:
        return
    torch_err = 0.0
    if x.dtype != torch.float64:
        ref_same = upsample_crop_add_reference(x, weight, stride, **kwargs).double().cpu()
        torch_err = (ref_same - ref64).abs().max().item()
    err = (out.double().cpu() - ref64).abs()
    scale = max(ref64.abs().max().item(), 1.0)
    bound = 2 * torch_err + FLOORS[x.dtype] * scale
    worst = err.max().item()
    if not worst <= bound:
        idx = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
        raise AssertionError(
            f"{what}: max error {worst:.3g} > bound {bound:.3g} (PyTorch's own {x.dtype} error {torch_err:.3g}) "
            f"at index {idx}: got {out.double().cpu()[idx].item():.6g}, reference {ref64[idx].item():.6g}"
        )
