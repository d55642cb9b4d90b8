"""``OptimizedFCN``: the inference runtime that :func:`fcnfast.optimize` returns.

It checks each input, converts it to the model's dtype and memory format, and on CUDA captures
one CUDA graph per input (shape, dtype, device) and replays it; on the CPU it runs the backbone
through :class:`fcnfast.cpu_plan.CpuPlan` where that can run (float32). Building one (variant
detection, weight adoption and folding) is :mod:`fcnfast.optimize`'s job; this module only runs
the result.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .backends import resolve_backend
from .cpu_plan import CpuPlan, cpu_plan_reason
from .geometry import SUPPORTED_DTYPES as FLOAT_DTYPES  # the heads' dtypes are the model's
from .models.fcn import FCN
from .wrappers import unwrap_model

__all__ = ["OptimizedFCN", "FLOAT_DTYPES", "unwrap_optimized"]


class OptimizedFCN(nn.Module):
    """An inference-only FCN built by :func:`fcnfast.optimize`; ``.model`` is the fcnfast model it runs.

    ``forward(x)`` takes a preprocessed (N, 3, H, W) float batch (see ``fcnfast.data.preprocess``)
    on the model's device and returns (N, num_classes, H, W) scores in ``x``'s dtype. The input
    is converted to the model's dtype and memory format inside. With ``cuda_graph`` the first call
    per (shape, dtype, device) captures a CUDA graph (3 warm-up runs + capture); later calls copy
    the input into the graph's static buffer and replay it. The output is a fresh tensor
    (``clone_output=True``) unless you ask for the static buffer, which the next call overwrites.

    ``cpu_route``: run CPU float32 inputs through :class:`~fcnfast.cpu_plan.CpuPlan` (packed
    oneDNN weights, the pad-100 band computed once per width); it is packed here, dropped by ``.to()`` and by
    copying or pickling, and packed again at the next CPU call. ``cpu_route_reason`` says why
    the route is off where it cannot run.
    """

    def __init__(
        self,
        model: FCN,
        *,
        channels_last: bool,
        cuda_graph: bool,
        clone_output: bool = True,
        max_graphs: int = 8,
        notes: Tuple[str, ...] = (),
        cpu_route: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.channels_last = bool(channels_last)
        self.cuda_graph = bool(cuda_graph)
        self.clone_output = bool(clone_output)
        self.max_graphs = int(max_graphs)
        self.notes = tuple(notes)
        self._graphs: "OrderedDict[tuple, Tuple[Tensor, Tensor, object]]" = OrderedDict()
        self._graph_failed: Optional[str] = None
        self._cudnn_benchmark_set = False
        self.cpu_route = bool(cpu_route)
        self._cpu_plan: Optional[CpuPlan] = None
        super().train(False)
        if self.cpu_route and self.cpu_route_reason is None:
            self._cpu_plan = CpuPlan(model)

    @property
    def cpu_route_reason(self) -> Optional[str]:
        """None when CPU inputs take the CPU route, else why not."""
        if not self.cpu_route:
            return "turned off (cpu_route=False)"
        return cpu_plan_reason(self.model, self.dtype, self.device)

    def __getstate__(self):
        # The packed oneDNN weights are opaque tensors: neither copied nor pickled, packed again.
        state = self.__dict__.copy()
        state["_cpu_plan"] = None
        return state

    # -- mode and device handling ---------------------------------------------------------------

    def train(self, mode: bool = True) -> "OptimizedFCN":
        """Stays in eval mode: this is an inference module (train the original model instead)."""
        if mode:
            warnings.warn(
                "OptimizedFCN is an inference module and stays in eval mode; train the original model "
                "and call fcnfast.optimize() again", UserWarning, stacklevel=2,
            )
        return super().train(False)

    def _apply(self, fn, recurse=True):
        # .to()/.cuda()/.half() move or replace the parameters a captured graph and the CPU
        # plan point at.
        self.reset_graphs()
        self._cpu_plan = None
        return super()._apply(fn, recurse)

    def reset_graphs(self) -> None:
        """Forget every captured CUDA graph (they are re-captured on the next call)."""
        self._graphs.clear()

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the network computes in (inputs are converted to it)."""
        return self.model.score_fr.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.score_fr.weight.device

    # -- forward --------------------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"OptimizedFCN expects a torch.Tensor image batch, got {type(x).__name__}")
        channels = self.model.layout.input_channels[0]
        if x.dim() != 4:
            hint = "; add a batch dimension with x[None]" if x.dim() == 3 else ""
            raise ValueError(
                f"OptimizedFCN expects a (N, {channels}, H, W) image batch, got shape {tuple(x.shape)}{hint}")
        if x.shape[1] != channels:
            what = "+".join(self.model.layout.modalities)
            raise ValueError(
                f"OptimizedFCN expects {channels} input channels ({what}, minus the mean; see "
                f"fcnfast.data.preprocess), got shape {tuple(x.shape)}"
            )
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"OptimizedFCN expects H, W >= 1, got shape {tuple(x.shape)}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"OptimizedFCN expects a floating-point input (preprocessed with fcnfast.data.preprocess), "
                f"got dtype {x.dtype}"
            )
        device = self.device
        if x.device.type != device.type or (device.index is not None and x.device.index not in (None, device.index)):
            raise ValueError(f"input is on {x.device} but the model is on {device}; move one of them")

    def _run(self, x: Tensor) -> Tensor:
        h = x.to(dtype=self.dtype)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        if x.device.type == "cpu" and self.cpu_route and not torch.compiler.is_compiling():
            if self._cpu_plan is None and self.cpu_route_reason is None:
                self._cpu_plan = CpuPlan(self.model)
            if self._cpu_plan is not None:
                out = self._cpu_plan(h)
                return out if out.dtype == x.dtype else out.to(x.dtype)
        out = self.model(h)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if x.is_cuda and not torch.compiler.is_compiling():
            if not self._cudnn_benchmark_set:
                torch.backends.cudnn.benchmark = True
                self._cudnn_benchmark_set = True
            if self.cuda_graph and self._graph_failed is None and x.shape[0] > 0:
                return self._graph_forward(x)
        with torch.no_grad():
            return self._run(x)

    # -- CUDA graphs ------------------------------------------------------------------------------

    def _graph_forward(self, x: Tensor) -> Tensor:
        # Capture and replay on x's device: the graph, its private memory pool and the side
        # stream bind to the current device, which need not be x's (a model on cuda:1).
        with torch.cuda.device(x.device):
            key = (tuple(x.shape), x.dtype, x.device)
            entry = self._graphs.get(key)
            if entry is None:
                try:
                    entry = self._capture(x)
                except Exception as exc:  # a backend that cannot be captured must not break inference
                    self._graph_failed = f"{type(exc).__name__}: {exc}"
                    warnings.warn(
                        f"fcnfast.optimize: CUDA graph capture failed ({self._graph_failed}); running without "
                        f"CUDA graphs", RuntimeWarning, stacklevel=3,
                    )
                    self._graphs.clear()
                    torch.cuda.synchronize(x.device)
                    with torch.no_grad():
                        return self._run(x)
                self._graphs[key] = entry
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
            else:
                self._graphs.move_to_end(key)
            static_in, static_out, graph = entry
            with torch.no_grad():
                static_in.copy_(x)
            graph.replay()
            return static_out.clone() if self.clone_output else static_out

    def _capture(self, x: Tensor):
        device = x.device
        static_in = torch.empty(x.shape, dtype=x.dtype, device=device)
        static_in.copy_(x)
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(3):  # cudnn.benchmark, Triton autotune and lazy inits happen here, not in capture
                self._run(static_in)
        torch.cuda.current_stream(device).wait_stream(stream)
        torch.cuda.synchronize(device)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            static_out = self._run(static_in)
        return static_in, static_out, graph

    # -- repr -----------------------------------------------------------------------------------

    def __repr__(self) -> str:
        m = self.model
        heads = ", ".join(f"{name}={head.depthwise_choice()}" for name, head in zip(m.head_names, m.heads()))
        backend = m.heads()[0].backend
        try:
            chosen = resolve_backend(backend, self.device, self.dtype)
        except Exception as exc:  # repr must not raise
            chosen = f"unavailable ({exc})"
        graphs = "off"
        if self.cuda_graph:
            graphs = f"on ({len(self._graphs)} captured shape(s))" if self._graph_failed is None else (
                f"failed, running eagerly ({self._graph_failed})")
        lines = [
            f"model: {type(m).__name__}(num_classes={m.num_classes}) on {self.device}, {str(self.dtype).replace('torch.', '')}"
            + (", channels_last VGG convs" if self.channels_last else ""),
            f"heads: {heads}; backend {backend or 'auto'} -> {chosen}",
            f"cuda_graph: {graphs}",
            "cpu route: " + ("oneDNN packed convs, the band computed once per width" if self.cpu_route_reason is None
                             else f"off ({self.cpu_route_reason})"),
            *self.notes,
            "inference only: eval mode, no grad; call under torch.inference_mode(); outputs in the input's dtype",
        ]
        return "OptimizedFCN(\n" + "".join(f"  {line}\n" for line in lines) + ")"


def unwrap_optimized(model: nn.Module) -> nn.Module:
    """``model`` without OptimizedFCN and the torch wrappers (torch.compile, DataParallel/DDP)."""
    model = unwrap_model(model)
    while isinstance(model, OptimizedFCN):
        model = unwrap_model(model.model)
    return model
