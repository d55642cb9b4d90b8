"""The contract every backend of ``upsample_crop_add`` fulfils, and the checks its launchers share.

A backend is one object (``BACKEND`` in ``reference.py``, ``cpp.py``, ``cuda.py``, ``triton.py``)
that says where it runs, in which dtypes, whether it can run on this machine and, when it
cannot, why, with a :class:`State` that the automatic choice acts on (it never reads the
messages). Its ``forward``/``backward`` receive tensors the registered op has validated against
the call's :class:`~fcnfast.geometry.Geometry`; the compiled backends still run
:meth:`Backend.check_launch`, a cheap consistency check, before raw pointers leave Python.
"""

from __future__ import annotations

import contextlib
import enum
from typing import NamedTuple, Optional, Tuple

import torch

from ..geometry import Geometry


class State(enum.Enum):
    """Whether a backend can run here; ``BROKEN`` is the one the automatic choice warns about."""

    READY = "ready"
    # Not built, not installed, or no device for it: expected on some machines, skipped quietly.
    ABSENT = "absent"
    # Built or installed but failing to load: a fault to fix, so skipping it is never silent.
    BROKEN = "broken"


class Availability(NamedTuple):
    """A backend's :class:`State` and its ``detail``: what it is when READY, else why it cannot run."""

    state: State
    detail: str


def dtype_names(dtypes) -> str:
    return ", ".join(str(d).replace("torch.", "") for d in dtypes)


def device_guard(device: torch.device):
    """Makes ``device`` current for a launch on a CUDA device; nothing for the CPU."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class Backend:
    """One implementation of the fused op. Subclasses set ``name``, ``device_types`` (the
    ``torch.device.type`` values it runs on) and ``dtypes``, and implement ``_probe``,
    ``forward`` and ``backward``."""

    name: str
    device_types: Tuple[str, ...]
    dtypes: Tuple[torch.dtype, ...]
    # True: forward, asked for the depthwise path, itself falls back to the dense one when x
    # holds a NaN or an infinity, so the op need not test x first (the cpp backend's tasks test
    # the input rows they read anyway). False: the op tests x and asks for the dense path.
    forward_checks_finite: bool = False

    def __init__(self) -> None:
        self._availability: Optional[Availability] = None

    def __repr__(self) -> str:
        return f"<fcnfast backend {self.name!r}: {self.availability().state.value}>"

    def _probe(self) -> Availability:
        """Finds out, once per process, whether this backend can run on this machine."""
        raise NotImplementedError

    def availability(self) -> Availability:
        if self._availability is None:
            self._availability = self._probe()
        return self._availability

    def unavailable_reason(self) -> Optional[str]:
        """Why this backend cannot run on this machine at all; None when it can."""
        found = self.availability()
        return None if found.state is State.READY else found.detail

    def why_not(self, device_type: str, dtype: torch.dtype) -> Optional[str]:
        """None when this backend can run a call with ``dtype`` tensors on ``device_type``
        ("cpu" or "cuda"), else why not."""
        reason = self.unavailable_reason()
        if reason is not None:
            return reason
        if device_type not in self.device_types:
            return f"backend {self.name!r} does not run on {device_type} tensors ({self.availability().detail})"
        if dtype not in self.dtypes:
            return (f"backend {self.name!r} does not support {dtype} on {device_type} "
                    f"(supports {dtype_names(self.dtypes)})")
        return None

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                skip: Optional[torch.Tensor], geom: Geometry, depthwise: bool) -> torch.Tensor:
        """The fused op on tensors validated against ``geom`` (``fcnfast.geometry.resolve_geometry``).

        Returns a new contiguous (N, Cout, H, W) tensor in x.dtype on x's device, empty
        without a launch when N == 0. ``depthwise`` promises Cin == Cout and a weight that
        is zero off the channel diagonal, and, unless ``forward_checks_finite``, an x without
        NaN or infinities.
        """
        raise NotImplementedError

    def backward(self, grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, geom: Geometry,
                 depthwise: bool, need_input: bool,
                 need_weight: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(grad_x, grad_weight) of the fused op; None for a gradient that is not needed.

        ``grad_out`` is (N, Cout, H, W) in x.dtype on x's device (the registered op casts it),
        in any layout. grad_x is contiguous (N, Cin, Hin, Win) in x.dtype; grad_weight has
        weight's shape and dtype and is always dense (every Cin x Cout pair, even when
        ``depthwise``: the off-diagonal gradient of a diagonal weight is not zero).
        """
        raise NotImplementedError

    def check_launch(self, geom: Geometry, x: torch.Tensor, weight: torch.Tensor, *,
                     bias: Optional[torch.Tensor] = None, skip: Optional[torch.Tensor] = None,
                     grad_out: Optional[torch.Tensor] = None, depthwise: bool = False) -> None:
        """The last check before raw pointers leave Python: every tensor is on a device and in a
        dtype this backend takes, and its extent is the one ``geom`` promises the kernel.

        Cheap (shapes, dtypes and devices only): the full validation of a call happens once,
        in the registered op. Raises ValueError (device, shape) or TypeError (dtype).
        """
        g = geom
        if x.device.type not in self.device_types:
            raise ValueError(f"backend {self.name!r} runs on {' or '.join(self.device_types)} tensors, "
                             f"x is on {x.device}")
        if x.dtype not in self.dtypes:
            raise TypeError(f"backend {self.name!r} supports {dtype_names(self.dtypes)}, x has dtype {x.dtype}")
        others = (("weight", weight), ("bias", bias), ("skip", skip), ("grad_out", grad_out))
        for name, t in others:
            if t is not None and (t.dtype != x.dtype or t.device != x.device):
                raise TypeError(f"{name} is {t.dtype} on {t.device}, x is {x.dtype} on {x.device}")
        shapes = (("x", x, (g.N, g.Cin, g.Hin, g.Win)), ("weight", weight, (g.Cin, g.Cout, g.kh, g.kw)),
                  ("bias", bias, (g.Cout,)), ("grad_out", grad_out, (g.N, g.Cout, g.H, g.W)))
        for name, t, shape in shapes:
            if t is not None and tuple(t.shape) != shape:
                raise ValueError(f"{name} shape {tuple(t.shape)} does not match geometry {g}")
        if skip is not None and (skip.dim() != 4 or skip.shape[0] != g.N or skip.shape[1] != g.Cout
                                 or skip.shape[2] < g.sy + g.H or skip.shape[3] < g.sx + g.W):
            raise ValueError(f"skip shape {tuple(skip.shape)} does not cover the window of {g}")
        if depthwise and g.Cin != g.Cout:
            raise ValueError(f"depthwise needs Cin == Cout, got geometry {g}")
