"""Backend registry: which implementations of upsample_crop_add exist, can run, and get picked.

Auto choice (DESIGN.md §3): CUDA tensors -> triton, else cuda, else reference;
CPU tensors -> cpp, else reference. FCNFAST_BACKEND overrides the auto choice. An
explicitly requested backend that cannot run raises with the reason; auto warns once
when it passes over a backend because its build is broken, so nothing fails silently.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch

from . import _extensions

BACKENDS = ("reference", "triton", "cuda", "cpp")
AUTO_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpp", "reference")}
ENV_VAR = "FCNFAST_BACKEND"

ALL_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class Backend(NamedTuple):
    forward: Callable
    backward: Callable
    dtypes: Tuple[torch.dtype, ...]
    device_types: Tuple[str, ...]


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


triton_interpreted = _triton_interpreted  # public: True when TRITON_INTERPRET runs Triton kernels on the CPU


@functools.lru_cache(maxsize=None)
def _load(name: str) -> Tuple[Optional[Backend], str]:
    """(Backend, "") when ``name`` can run on this machine at all, else (None, reason)."""
    if name == "reference":
        from .reference import upsample_crop_add_backward_reference, upsample_crop_add_reference_launch

        return Backend(upsample_crop_add_reference_launch, upsample_crop_add_backward_reference,
                       ALL_DTYPES, ("cpu", "cuda")), "pure PyTorch"
    if name == "cpp":
        module, reason = _extensions.load("_C")
        if module is None:
            return None, reason
        from . import cpp

        info = module.build_info()
        omp = f"OpenMP, up to {info['max_threads']} threads" if info["openmp"] else "no OpenMP (1 thread)"
        return Backend(cpp.upsample_crop_add_cpp, cpp.upsample_crop_add_backward_cpp, cpp.DTYPES, ("cpu",)), (
            f"fcnfast._C built ({omp})"
        )
    if name == "cuda":
        module, reason = _extensions.load("_cuda")
        if module is None:
            return None, reason
        count, error = module.device_count()
        if count == 0:
            return None, f"fcnfast._cuda is built ({module.build_info()['archs']}) but sees no CUDA device: {error or 'none found'}"
        if not torch.cuda.is_available():
            return None, "fcnfast._cuda sees a device but this torch build has no CUDA"
        from . import cuda

        return Backend(cuda.upsample_crop_add_cuda, cuda.upsample_crop_add_backward_cuda, cuda.DTYPES, ("cuda",)), (
            f"fcnfast._cuda built for {module.build_info()['archs']}, {count} device(s)"
        )
    if name == "triton":
        if importlib.util.find_spec("triton") is None:
            return None, "triton is not installed (pip install triton)"
        interpreted = _triton_interpreted()
        if not torch.cuda.is_available() and not interpreted:
            return None, "triton needs a CUDA device (or TRITON_INTERPRET=1 to run on the CPU, slowly)"
        try:
            launcher = importlib.import_module("fcnfast.backends.triton")
        except Exception as exc:  # a broken kernel file must be visible, not skipped
            return None, f"importing the Triton kernels failed: {type(exc).__name__}: {exc}"
        import triton

        devices = ("cuda", "cpu") if interpreted else ("cuda",)
        dtypes = tuple(d for d in launcher.DTYPES if not (interpreted and d == torch.bfloat16))
        mode = "interpreter (TRITON_INTERPRET=1)" if interpreted else "compiled for CUDA"
        return Backend(launcher.upsample_crop_add_triton, launcher.upsample_crop_add_backward_triton,
                       dtypes, devices), f"triton {triton.__version__}, {mode}"
    raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")


def available_backends() -> Dict[str, Tuple[bool, str]]:
    """``{name: (available, reason)}`` for every backend: whether it can run here at all."""
    return {name: (_load(name)[0] is not None, _load(name)[1]) for name in BACKENDS}


def check_backend_name(backend: Optional[str]) -> None:
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS} or None for auto")


_warned: set = set()


def supports(name: str, device, dtype: torch.dtype) -> Tuple[bool, str]:
    """(True, what it is) when backend ``name`` can run a call with ``dtype`` tensors on ``device``
    (a torch.device, or a device string such as "cpu", "cuda", "cuda:1"), else (False, why not)."""
    check_backend_name(name)
    device_type = torch.device(device).type
    if device_type == "cuda" and not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    return _can_run(name, "cuda" if device_type == "cuda" else "cpu", dtype)


def _can_run(name: str, device_type: str, dtype: torch.dtype) -> Tuple[bool, str]:
    backend, reason = _load(name)
    if backend is None:
        return False, reason
    if device_type not in backend.device_types:
        return False, f"backend {name!r} does not run on {device_type} tensors ({reason})"
    if dtype not in backend.dtypes:
        supported = ", ".join(str(d).replace("torch.", "") for d in backend.dtypes)
        return False, f"backend {name!r} does not support {dtype} on {device_type} (supports {supported})"
    return True, reason


def resolve_backend(requested: Optional[str], device: torch.device, dtype: torch.dtype) -> str:
    """The backend that will run a call with tensors on ``device`` of ``dtype``."""
    device_type = "cuda" if device.type == "cuda" else "cpu"
    if requested is None:
        requested = os.environ.get(ENV_VAR) or None
    if requested is not None:
        check_backend_name(requested)
        ok, reason = _can_run(requested, device_type, dtype)
        if not ok:
            raise RuntimeError(f"backend {requested!r} was requested but cannot run this call: {reason}")
        return requested
    for name in AUTO_ORDER[device_type]:
        ok, reason = _can_run(name, device_type, dtype)
        if ok:
            return name
        broken = "failed to import" in reason or "failed:" in reason
        if broken and name not in _warned:
            _warned.add(name)
            warnings.warn(f"fcnfast: auto backend skips {name!r}: {reason}", RuntimeWarning, stacklevel=3)
    raise AssertionError("the reference backend always runs")  # pragma: no cover


def get(name: str) -> Backend:
    backend, reason = _load(name)
    if backend is None:
        raise RuntimeError(f"backend {name!r} is unavailable: {reason}")
    return backend
