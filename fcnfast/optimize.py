"""``optimize(model)``: a faster inference module with the same outputs.

    import fcnfast, torch
    fast = fcnfast.optimize(model, dtype=torch.float16, cuda_graph=True)   # model: fcnfast or pytorch-fcn
    with torch.inference_mode():
        scores = fast(images)            # (N, n_classes, H, W), same values as model(images)

What it does, once, without calling the given model's forward:

1. Builds an fcnfast model of the matching variant (FCN-32s / 16s / 8s / 8s-at-once) and copies
   the weights. pytorch-fcn style modules (``conv1_1`` .. ``conv5_3``, ``pool1`` .. ``pool5``,
   ``fc6``, ``fc7``, ``score_*`` and ``nn.ConvTranspose2d`` upscore layers) are accepted: their
   upscore weights become :class:`fcnfast.nn.UpsampleCropAdd` weights, so the fused kernels do
   transposed conv + crop + skip add in one pass per stage. The given model is left untouched.
2. Folds FCN-8s-at-once's input scales (pool4 x 0.01, pool3 x 0.0001) into the score_pool4 /
   score_pool3 weights and sets the scales to 1 (in float16, where the folded weights would be
   subnormal, the scales stay as one multiply each).
3. Detects frozen bilinear (channel-diagonal) upsampling filters once and sets each head's
   ``depthwise`` explicitly: no detection at call time, nothing data-dependent in the graph.
4. Optionally converts the weights to float16 / bfloat16 (the fused heads accumulate in fp32)
   and the VGG convolutions to channels_last (the input is converted inside ``forward``).
5. On CUDA: turns on ``torch.backends.cudnn.benchmark`` and, with ``cuda_graph=True``, captures
   one CUDA graph per input (shape, dtype, device) and replays it.

The result is an inference module: it is in eval mode (dropout is a no-op) and stays there, its
parameters do not require grad, and ``forward`` runs under ``torch.no_grad()``; call it under
``torch.inference_mode()``. It works under ``torch.compile`` (CUDA graphs are then left to
``mode="reduce-overhead"``). Data flows one way: this module builds on models, nn and ops;
nothing below it imports it.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Type

import torch
from torch import Tensor, nn

from .backends import check_backend_name, resolve_backend
from .models.fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s, _FCNBase
from .ops import is_channel_diagonal
from .wrappers import unwrap_model

__all__ = ["optimize", "OptimizedFCN", "detect_variant"]

# ConvTranspose2d geometry of every FCN upsampling layer: name -> (kernel, stride).
HEAD_GEOMETRY: Dict[str, Tuple[int, int]] = {
    "upscore": (64, 32),
    "upscore2": (4, 2),
    "upscore16": (32, 16),
    "upscore_pool4": (4, 2),
    "upscore8": (16, 8),
}
AT_ONCE_SCALES = (0.01, 0.0001)
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_BACKBONE = tuple(f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1))
_BACKBONE += ("fc6", "fc7", "score_fr")

# variant class -> (score layers besides score_fr, head layers), in forward order.
_LAYOUT: Dict[Type[_FCNBase], Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    FCN32s: ((), ("upscore",)),
    FCN16s: (("score_pool4",), ("upscore2", "upscore16")),
    FCN8s: (("score_pool4", "score_pool3"), ("upscore2", "upscore_pool4", "upscore8")),
    FCN8sAtOnce: (("score_pool4", "score_pool3"), ("upscore2", "upscore_pool4", "upscore8")),
}


# ---------------------------------------------------------------------------------------------
# Detection of the variant and checks of a foreign (pytorch-fcn style) module
# ---------------------------------------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip OptimizedFCN and the torch wrappers (torch.compile, DataParallel/DDP)."""
    model = unwrap_model(model)
    while isinstance(model, OptimizedFCN):
        model = unwrap_model(model.model)
    return model


def detect_variant(model: nn.Module, at_once: Optional[bool] = None) -> Tuple[Type[_FCNBase], Tuple[float, float]]:
    """(fcnfast class, (pool4 scale, pool3 scale)) for an fcnfast or pytorch-fcn style FCN.

    The variant comes from the attributes (``upscore8`` -> FCN-8s, ``upscore16`` -> FCN-16s,
    ``upscore`` -> FCN-32s). At-once: ``at_once=None`` uses an fcnfast model's own
    ``pool4_scale``/``pool3_scale`` or, for other modules, whether the class name contains
    'AtOnce'; True forces (0.01, 0.0001), False (1, 1).
    """
    model = _unwrap(model)
    if isinstance(model, _FCNBase):
        cls = next(c for c in (FCN8sAtOnce, FCN8s, FCN16s, FCN32s) if isinstance(model, c))
        scales = (float(model.pool4_scale), float(model.pool3_scale))
    else:
        names = set(dict(model.named_children()))
        if {"upscore2", "upscore_pool4", "upscore8"} <= names:
            cls = FCN8s
        elif {"upscore2", "upscore16"} <= names:
            cls = FCN16s
        elif "upscore" in names:
            cls = FCN32s
        else:
            raise ValueError(
                f"cannot tell which FCN {type(model).__name__} is: it has none of the upsampling layers "
                f"upscore8 + upscore_pool4 + upscore2 (FCN-8s), upscore16 + upscore2 (FCN-16s) or "
                f"upscore (FCN-32s); optimize() takes fcnfast models and pytorch-fcn style FCNs"
            )
        if cls is FCN8s and "AtOnce" in type(model).__name__:
            cls = FCN8sAtOnce
        scales = AT_ONCE_SCALES if cls is FCN8sAtOnce else (1.0, 1.0)
    if at_once is not None:
        if not isinstance(at_once, bool):
            raise TypeError(f"at_once must be None, True or False, got {at_once!r}")
        if at_once and not issubclass(cls, FCN8s):
            raise ValueError(f"at_once=True applies to FCN-8s only; {type(model).__name__} is {cls.__name__}")
        if issubclass(cls, FCN8s):
            cls = FCN8sAtOnce if at_once else FCN8s
            scales = AT_ONCE_SCALES if at_once else (1.0, 1.0)
    if not issubclass(cls, FCN8s):
        scales = (1.0, 1.0)
    return cls, scales


def _describe(m: nn.Module) -> str:
    return f"{type(m).__name__}({m.extra_repr()})"


def _check_foreign_layout(model: nn.Module, target: _FCNBase, cls: Type[_FCNBase], num_classes: int) -> None:
    """Every layer a pytorch-fcn style module holds must have the Caffe geometry of ``target``."""
    score_names, head_names = _LAYOUT[cls]
    problems: List[str] = []
    for name in _BACKBONE + score_names:
        src, ref = getattr(model, name, None), getattr(target, name)
        if not isinstance(src, nn.Conv2d):
            problems.append(f"{name} is {'missing' if src is None else type(src).__name__}, expected nn.Conv2d")
            continue
        got = (src.in_channels, src.out_channels, src.kernel_size, src.stride, src.padding, src.dilation, src.groups)
        want = (ref.in_channels, ref.out_channels, ref.kernel_size, ref.stride, ref.padding, ref.dilation, ref.groups)
        if got != want:
            problems.append(f"{name} is {_describe(src)}, expected {_describe(ref)}")
        if src.bias is None:
            problems.append(f"{name} has no bias (every Caffe FCN conv has one)")
    for block in range(1, 6):
        pool = getattr(model, f"pool{block}", None)
        if pool is None:
            continue  # a functional pool in forward cannot be checked; the weights still are
        ok = (
            isinstance(pool, nn.MaxPool2d)
            and torch.nn.modules.utils._pair(pool.kernel_size) == (2, 2)
            and torch.nn.modules.utils._pair(pool.stride) == (2, 2)
            and torch.nn.modules.utils._pair(pool.padding) == (0, 0)
            and pool.ceil_mode
        )
        if not ok:
            problems.append(f"pool{block} is {_describe(pool)}, expected MaxPool2d(2, stride=2, ceil_mode=True)")
    for name in head_names:
        src = getattr(model, name)
        k, s = HEAD_GEOMETRY[name]
        if not isinstance(src, nn.ConvTranspose2d):
            problems.append(f"{name} is {type(src).__name__}, expected nn.ConvTranspose2d")
            continue
        got = (src.in_channels, src.out_channels, src.kernel_size, src.stride, src.padding,
               src.output_padding, src.dilation, src.groups)
        want = (num_classes, num_classes, (k, k), (s, s), (0, 0), (0, 0), (1, 1), 1)
        if got != want:
            problems.append(
                f"{name} is {_describe(src)}, expected ConvTranspose2d({num_classes}, {num_classes}, "
                f"kernel_size={k}, stride={s}, padding=0, bias=False)"
            )
    if problems:
        raise ValueError(
            f"{type(model).__name__} is not laid out like a Caffe/pytorch-fcn {cls.__name__}: " + "; ".join(problems)
        )


def _num_classes(model: nn.Module) -> int:
    score_fr = getattr(model, "score_fr", None)
    if isinstance(model, _FCNBase):
        return model.num_classes
    if not isinstance(score_fr, nn.Conv2d):
        raise ValueError(f"{type(model).__name__} has no score_fr nn.Conv2d; cannot tell the number of classes")
    return score_fr.out_channels


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _folds_exactly(weight: Tensor, scale: float, dtype: torch.dtype) -> bool:
    """Whether scale * weight stays in the normal range of ``dtype`` (no subnormal precision loss)."""
    nonzero = weight.detach().abs()
    nonzero = nonzero[nonzero > 0]
    if nonzero.numel() == 0:
        return True
    return float(nonzero.min()) * scale >= torch.finfo(dtype).tiny


# ---------------------------------------------------------------------------------------------
# The optimized module
# ---------------------------------------------------------------------------------------------


class OptimizedFCN(nn.Module):
    """An inference-only FCN built by :func:`optimize`; ``.model`` is the fcnfast model it runs.

    ``forward(x)`` takes a preprocessed (N, 3, H, W) float batch (see ``fcnfast.data.preprocess``)
    on the model's device and returns (N, num_classes, H, W) scores in ``x``'s dtype. The input
    is converted to the model's dtype and memory format inside. With ``cuda_graph`` the first call
    per (shape, dtype, device) captures a CUDA graph (3 warm-up runs + capture); later calls copy
    the input into the graph's static buffer and replay it. The output is a fresh tensor
    (``clone_output=True``) unless you ask for the static buffer, which the next call overwrites.
    """

    def __init__(
        self,
        model: _FCNBase,
        *,
        channels_last: bool,
        cuda_graph: bool,
        clone_output: bool = True,
        max_graphs: int = 8,
        notes: Tuple[str, ...] = (),
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
        super().train(False)

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
        # .to()/.cuda()/.half() move or replace the parameters a captured graph points at.
        self.reset_graphs()
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
        if x.dim() != 4:
            hint = "; add a batch dimension with x[None]" if x.dim() == 3 else ""
            raise ValueError(f"OptimizedFCN expects a (N, 3, H, W) image batch, got shape {tuple(x.shape)}{hint}")
        if x.shape[1] != 3:
            raise ValueError(
                f"OptimizedFCN expects 3 input channels (BGR minus mean, see fcnfast.data.preprocess), "
                f"got shape {tuple(x.shape)}"
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
            *self.notes,
            "inference only: eval mode, no grad; call under torch.inference_mode(); outputs in the input's dtype",
        ]
        return "OptimizedFCN(\n" + "".join(f"  {line}\n" for line in lines) + ")"


# ---------------------------------------------------------------------------------------------
# optimize()
# ---------------------------------------------------------------------------------------------


def optimize(
    model: nn.Module,
    *,
    backend: Optional[str] = None,
    dtype: Optional[torch.dtype] = None,
    channels_last: bool = True,
    cuda_graph: bool = False,
    at_once: Optional[bool] = None,
) -> OptimizedFCN:
    """A faster inference module computing the same outputs as ``model`` (within dtype tolerance).

    Args:
        model: an fcnfast FCN32s/FCN16s/FCN8s/FCN8sAtOnce, or a module laid out like pytorch-fcn's
            FCN32s/FCN16s/FCN8s/FCN8sAtOnce (conv1_1..conv5_3, pool1..pool5, fc6, fc7, score_fr,
            score_pool4, score_pool3, upscore* as ``nn.ConvTranspose2d``). Its forward is never
            called and it is not modified; the weights are copied.
        backend: backend of the fused heads ("triton", "cuda", "cpp", "reference"; None = auto,
            per input device). An explicit backend that cannot run on the model's device and
            dtype raises RuntimeError here, not at the first call.
        dtype: None keeps the model's dtype; torch.float16 / torch.bfloat16 convert the weights
            (inputs are converted in forward; outputs come back in the input's dtype).
        channels_last: run the VGG convolutions in channels_last memory format.
        cuda_graph: capture one CUDA graph per input shape (CUDA only; elsewhere this warns and
            runs without graphs). Ignored while ``torch.compile`` traces the module.
        at_once: None detects FCN-8s-at-once (fcnfast: the model's pool scales; others: 'AtOnce'
            in the class name); True / False override.

    Returns:
        :class:`OptimizedFCN`, in eval mode; call it under ``torch.inference_mode()``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize() expects an nn.Module (an FCN), got {type(model).__name__}")
    # Built outside inference mode even when called inside it: the new weights must be normal
    # tensors (version counters for the depthwise detection, usable for later autograd-free capture).
    with torch.inference_mode(False), torch.no_grad():
        return _optimize(model, backend=backend, dtype=dtype, channels_last=channels_last,
                         cuda_graph=cuda_graph, at_once=at_once)


def _optimize(model, *, backend, dtype, channels_last, cuda_graph, at_once) -> OptimizedFCN:
    check_backend_name(backend)
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be None or one of {[str(d) for d in FLOAT_DTYPES]}, got {dtype!r}")
    if not isinstance(cuda_graph, bool):
        raise TypeError(f"cuda_graph must be a bool, got {cuda_graph!r}")
    source = _unwrap(model)
    cls, (scale4, scale3) = detect_variant(source, at_once)
    num_classes = _num_classes(source)
    with torch.device("meta"):
        target = cls(num_classes=num_classes, backend=backend)
    if not isinstance(source, _FCNBase):
        _check_foreign_layout(source, target, cls, num_classes)
    device = _model_device(source)
    if device.type == "meta":
        raise ValueError("optimize() needs a model with real weights, not one on the meta device")
    target_dtype = dtype or _model_dtype(source)

    # Weights: same names in fcnfast and pytorch-fcn (ConvTranspose2d.weight -> UpsampleCropAdd.weight).
    src_state = {k: v for k, v in source.state_dict().items()}
    score_names, head_names = _LAYOUT[cls]
    for name in head_names:  # a head with a bias (not FCN's, but representable): give the target one
        key = f"{name}.bias"
        if src_state.get(key) is not None:
            head = getattr(target, name)
            if head.bias is None:
                del head.bias
                with torch.device("meta"):
                    head.register_parameter("bias", nn.Parameter(torch.empty(num_classes), requires_grad=False))
    expected = target.state_dict()
    missing = [k for k in expected if src_state.get(k) is None]
    mis_shaped = [
        f"{k} {tuple(src_state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items() if src_state.get(k) is not None and tuple(src_state[k].shape) != tuple(v.shape)
    ]
    if missing or mis_shaped:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + (
            [f"wrong shapes {', '.join(mis_shaped[:5])}"] if mis_shaped else [])
        raise ValueError(f"cannot copy the weights of {type(source).__name__} into fcnfast {cls.__name__}: " + "; ".join(parts))

    notes: List[str] = [f"built from {type(source).__module__}.{type(source).__name__}"]
    fold = {"score_pool4": scale4, "score_pool3": scale3}
    runtime_scales = {"score_pool4": 1.0, "score_pool3": 1.0}
    state: Dict[str, Tensor] = {}
    conv_layers = set(_BACKBONE + score_names)
    for key in expected:
        tensor = src_state[key].detach()
        layer = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and layer in fold and fold[layer] != 1.0 and issubclass(cls, FCN8s):
            scale = fold[layer]
            if target_dtype == torch.float16 and not _folds_exactly(tensor.float(), scale, target_dtype):
                runtime_scales[layer] = scale  # folded weights would be subnormal in float16
            else:
                tensor = tensor.to(torch.float64 if tensor.dtype == torch.float64 else torch.float32) * scale
        # One copy per tensor, straight into its final dtype and memory format.
        fmt = torch.channels_last if (channels_last and tensor.dim() == 4 and layer in conv_layers) else torch.contiguous_format
        if tensor.is_floating_point():
            tensor = tensor.to(device=device, dtype=target_dtype, memory_format=fmt, copy=True)
        state[key] = tensor.contiguous(memory_format=fmt)
    nn.Module.load_state_dict(target, state, strict=True, assign=True)
    if issubclass(cls, FCN8s):
        target.pool4_scale = runtime_scales["score_pool4"]
        target.pool3_scale = runtime_scales["score_pool3"]
        folded = [f"{layer} x{fold[layer]:g}" for layer in ("score_pool4", "score_pool3")
                  if fold[layer] != 1.0 and runtime_scales[layer] == 1.0]
        kept = [f"{layer} input x{runtime_scales[layer]:g}" for layer in ("score_pool4", "score_pool3")
                if runtime_scales[layer] != 1.0]
        if folded:
            notes.append("at-once scales folded into weights: " + ", ".join(folded))
        if kept:
            notes.append("at-once scales kept at run time (folded float16 weights would be subnormal): " + ", ".join(kept))

    for p in target.parameters():
        p.requires_grad_(False)
    # Detect bilinear filters once; an explicit choice means no scan at call time (and nothing
    # data-dependent under torch.compile or CUDA-graph capture).
    for head in target.heads():
        head.depthwise = bool(is_channel_diagonal(head.weight))
    target.eval()

    if backend is not None:
        resolve_backend(backend, device, target_dtype)  # raises now, with the reason, if it cannot run
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cuda_graph and (device.type != "cuda" or not torch.cuda.is_available()):
        warnings.warn(
            f"fcnfast.optimize: cuda_graph=True needs a model on a CUDA device (this one is on {device}); "
            f"running without CUDA graphs (they are used if the module is moved to CUDA later)",
            UserWarning, stacklevel=4,
        )
    return OptimizedFCN(target, channels_last=channels_last, cuda_graph=cuda_graph, notes=tuple(notes))
