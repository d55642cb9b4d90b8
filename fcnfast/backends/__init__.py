"""Backend registry: which implementations of upsample_crop_add exist, can run, and get picked.

Each backend is one object (:class:`~fcnfast.backends.base.Backend`) that says where it runs,
in which dtypes, and whether and why not it can run here. Automatic choice: CUDA tensors ->
triton, else cuda, else reference; CPU tensors -> cpp, else reference. FCNFAST_BACKEND
overrides the automatic choice. An explicitly requested backend that cannot run raises with
the reason; the automatic choice warns once when it passes over a backend whose state is
BROKEN (built or installed, but failing to load), so nothing fails silently.
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, Optional, Tuple

import torch

from fcnfast.kernels import triton_interpreted

from . import cpp, cuda, reference, triton
from .base import Availability, Backend, State

_REGISTRY: Dict[str, Backend] = {b.name: b for b in (reference.BACKEND, triton.BACKEND, cuda.BACKEND, cpp.BACKEND)}
BACKENDS = tuple(_REGISTRY)
AUTO_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpp", "reference")}
ENV_VAR = "FCNFAST_BACKEND"


def check_backend_name(backend: Optional[str], source: str = "") -> None:
    """ValueError unless ``backend`` is None or a backend's name; ``source`` says where the name
    came from (e.g. " (by FCNFAST_BACKEND)")."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}{source}; choose from {BACKENDS} or None for auto")


def get(name: str) -> Backend:
    """The backend object called ``name`` (whether or not it can run here)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")
    return _REGISTRY[name]


def available_backends() -> Dict[str, Tuple[bool, str]]:
    """``{name: (available, reason)}`` for every backend: whether it can run here at all, and
    what it is or why not."""
    return {name: (b.availability().state is State.READY, b.availability().detail) for name, b in _REGISTRY.items()}


def supports(name: str, device, dtype: torch.dtype) -> Tuple[bool, str]:
    """(True, what it is) when backend ``name`` can run a call with ``dtype`` tensors on ``device``
    (a torch.device, or a device string such as "cpu", "cuda", "cuda:1"), else (False, why not)."""
    check_backend_name(name)
    device_type = torch.device(device).type
    if device_type == "cuda" and not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    return _supports_type(name, _device_type(device_type), dtype)


def _device_type(device_type: str) -> str:
    # Every device that is not CUDA runs as the CPU does (the auto order and the reference).
    return "cuda" if device_type == "cuda" else "cpu"


def _supports_type(name: str, device_type: str, dtype: torch.dtype) -> Tuple[bool, str]:
    backend = get(name)
    reason = backend.why_not(device_type, dtype)
    return (True, backend.availability().detail) if reason is None else (False, reason)


_warned: set = set()


def resolve_backend(requested: Optional[str], device: torch.device, dtype: torch.dtype) -> str:
    """The backend that will run a call with tensors on ``device`` of ``dtype``.

    Raises ValueError for an unknown name and RuntimeError, with the reason, for a backend that
    cannot run the call; when the name came from FCNFAST_BACKEND, the message says so."""
    device_type = _device_type(device.type)
    source = ""
    if requested is None:
        requested = os.environ.get(ENV_VAR) or None
        source = f" (by {ENV_VAR})"
    if requested is not None:
        check_backend_name(requested, source)
        reason = get(requested).why_not(device_type, dtype)
        if reason is not None:
            raise RuntimeError(f"backend {requested!r} was requested{source} but cannot run this call: {reason}")
        return requested
    for name in AUTO_ORDER[device_type]:
        backend = get(name)
        reason = backend.why_not(device_type, dtype)
        if reason is None:
            return name
        if backend.availability().state is State.BROKEN and name not in _warned:
            _warned.add(name)
            warnings.warn(f"fcnfast: auto backend skips {name!r}: {reason}", RuntimeWarning, stacklevel=3)
    raise AssertionError("the reference backend always runs")  # pragma: no cover


__all__ = ["BACKENDS", "AUTO_ORDER", "ENV_VAR", "Availability", "Backend", "State", "available_backends",
           "check_backend_name", "get", "resolve_backend", "supports", "triton_interpreted"]
