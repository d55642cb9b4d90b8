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
5. On CUDA: turns on ``torch.backends.cudnn.benchmark``; with ``cuda_graph=True`` the returned
   :class:`~fcnfast.optimized_fcn.OptimizedFCN` captures one CUDA graph per input (shape, dtype,
   device) and replays it.
6. On the CPU in float32: packs the backbone's weights for oneDNN, whose convolutions then run
   with ReLU fused in channels_last; conv1-conv3 convolve only the rows that see the image, the
   rest of conv1_1's pad-100 canvas being the same for every image of a width and computed once
   (:mod:`fcnfast.cpu_plan`, :mod:`fcnfast.band`): no compile step.

Which variant a module is, and the geometry a foreign module must have, come from
:mod:`fcnfast.models.layout` through the model registry.

The result is an inference module: it is in eval mode (dropout is a no-op) and stays there, its
parameters do not require grad, and ``forward`` runs under ``torch.no_grad()``; call it under
``torch.inference_mode()``. It works under ``torch.compile`` (CUDA graphs are then left to
``mode="reduce-overhead"``). Data flows one way: this module builds on models, nn and ops;
nothing below it imports it.
"""

from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Tuple, Type

import torch
from torch import Tensor, nn

from .backends import check_backend_name, resolve_backend
from .models.fcn import FCN
from .models.layout import (
    LAYOUTS, POOL_KERNEL, POOL_STRIDE, SCALED_POOLS, VGG16_BLOCKS, ModelLayout, at_once_pair, pool_scale_attr,
)
from .models.registry import MODELS, model_name_of
from .ops import is_channel_diagonal
from .optimized_fcn import FLOAT_DTYPES, OptimizedFCN, unwrap_optimized

__all__ = ["optimize", "OptimizedFCN", "detect_variant"]

# Variants a pytorch-fcn style module can be (one RGB trunk, one score map, no at-once scales), most
# heads first; a foreign module is the first whose heads it has (the VOC layouts come first).
_PLAIN_BY_HEADS = sorted((lay for lay in LAYOUTS.values() if lay.plain and not lay.at_once),
                         key=lambda lay: -len(lay.heads))


# ---------------------------------------------------------------------------------------------
# Detection of the variant and checks of a foreign (pytorch-fcn style) module
# ---------------------------------------------------------------------------------------------


def detect_variant(model: nn.Module, at_once: Optional[bool] = None) -> Tuple[Type[FCN], Tuple[float, float]]:
    """(fcnfast class, (pool4 scale, pool3 scale)) for an fcnfast or pytorch-fcn style FCN.

    The variant comes from the attributes (``upscore8`` -> FCN-8s, ``upscore16`` -> FCN-16s,
    ``upscore`` -> FCN-32s). At-once: ``at_once=None`` uses an fcnfast model's own
    ``pool4_scale``/``pool3_scale`` or, for other modules, whether the class name contains
    'AtOnce'; True forces (0.01, 0.0001), False (1, 1). A pool the variant does not score has
    scale 1.
    """
    model = unwrap_optimized(model)
    name = model_name_of(model)
    if name is not None:
        layout = LAYOUTS[name]
        scales = tuple(float(getattr(model, pool_scale_attr(pool))) for pool in SCALED_POOLS)
    else:
        layout = _foreign_layout(model)
        pair = at_once_pair(layout)
        if pair is not None and "AtOnce" in type(model).__name__:
            layout = pair[1]
        scales = layout.pool_scales
    if at_once is not None:
        if not isinstance(at_once, bool):
            raise TypeError(f"at_once must be None, True or False, got {at_once!r}")
        pair = at_once_pair(layout)
        if at_once and pair is None:
            with_at_once = " and ".join(lay.title for lay in _PLAIN_BY_HEADS if at_once_pair(lay) is not None)
            raise ValueError(f"at_once=True applies to {with_at_once} only; {type(model).__name__} is "
                             f"{MODELS[layout.name].__name__}")
        if pair is not None:
            layout = pair[1] if at_once else pair[0]
            scales = layout.pool_scales
    scored = {stage.skip_pool for stage in layout.skip_stages}
    scales = tuple(scale if pool in scored else 1.0 for pool, scale in zip(SCALED_POOLS, scales))
    return MODELS[layout.name], scales


def _foreign_layout(model: nn.Module) -> ModelLayout:
    """The plain layout whose upsampling layers a non-fcnfast module holds (the most heads wins)."""
    names = set(dict(model.named_children()))
    for layout in _PLAIN_BY_HEADS:
        if set(layout.head_names) <= names:
            return layout
    options = [f"{' + '.join(reversed(lay.head_names))} ({lay.title})" for lay in _PLAIN_BY_HEADS]
    raise ValueError(
        f"cannot tell which FCN {type(model).__name__} is: it has none of the upsampling layers "
        f"{', '.join(options[:-1])} or {options[-1]}; optimize() takes fcnfast models and pytorch-fcn style FCNs"
    )


def _check_supported(layout: ModelLayout) -> None:
    """optimize() runs one input through to one output: the two-stream and two-headed release
    networks run as they are (their heads already use the fused op)."""
    if len(layout.streams) > 1 or len(layout.tasks) > 1:
        shape = (f"{len(layout.streams)} inputs ({', '.join('+'.join(s.modalities) for s in layout.streams)})"
                 if len(layout.streams) > 1 else f"{len(layout.tasks)} outputs ({', '.join(layout.labels)})")
        raise ValueError(f"optimize() does not accelerate {layout.name}: it takes one input and returns one score "
                         f"map, and {layout.name} has {shape}; run the model itself, whose head stages already "
                         f"use the fused op")


def _describe(m: nn.Module) -> str:
    return f"{type(m).__name__}({m.extra_repr()})"


def _check_foreign_layout(model: nn.Module, target: FCN, num_classes: int) -> None:
    """Every layer a pytorch-fcn style module holds must have the Caffe geometry of ``target``."""
    problems: List[str] = []
    for name in target.layout.conv_layers:
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
    for block in range(1, len(VGG16_BLOCKS) + 1):
        pool = getattr(model, f"pool{block}", None)
        if pool is None:
            continue  # a functional pool in forward cannot be checked; the weights still are
        ok = (
            isinstance(pool, nn.MaxPool2d)
            and torch.nn.modules.utils._pair(pool.kernel_size) == (POOL_KERNEL,) * 2
            and torch.nn.modules.utils._pair(pool.stride) == (POOL_STRIDE,) * 2
            and torch.nn.modules.utils._pair(pool.padding) == (0, 0)
            and pool.ceil_mode
        )
        if not ok:
            problems.append(f"pool{block} is {_describe(pool)}, expected "
                            f"MaxPool2d({POOL_KERNEL}, stride={POOL_STRIDE}, ceil_mode=True)")
    for stage in target.layout.heads:
        name, k, s = stage.name, stage.kernel, stage.stride
        src = getattr(model, name)
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
            f"{type(model).__name__} is not laid out like a Caffe/pytorch-fcn {type(target).__name__}: "
            + "; ".join(problems)
        )


def _num_classes(model: nn.Module) -> int:
    score_fr = getattr(model, "score_fr", None)
    if isinstance(model, FCN):
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
    cpu_route: bool = True,
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
        cpu_route: on the CPU in float32, run the backbone as oneDNN convolutions with weights
            packed here and ReLU fused, conv1-conv3 computing only the rows that see the image
            (:mod:`fcnfast.cpu_plan`); False runs the module's own layers.

    Returns:
        :class:`OptimizedFCN`, in eval mode; call it under ``torch.inference_mode()``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize() expects an nn.Module (an FCN), got {type(model).__name__}")
    # Built outside inference mode even when called inside it: the new weights must be normal
    # tensors (version counters for the depthwise detection, usable for later autograd-free capture).
    with torch.inference_mode(False), torch.no_grad():
        return _optimize(model, backend=backend, dtype=dtype, channels_last=channels_last,
                         cuda_graph=cuda_graph, at_once=at_once, cpu_route=cpu_route)


def _optimize(model, *, backend, dtype, channels_last, cuda_graph, at_once, cpu_route) -> OptimizedFCN:
    check_backend_name(backend)
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be None or one of {[str(d) for d in FLOAT_DTYPES]}, got {dtype!r}")
    if not isinstance(cuda_graph, bool):
        raise TypeError(f"cuda_graph must be a bool, got {cuda_graph!r}")
    source = unwrap_optimized(model)
    cls, scales = detect_variant(source, at_once)
    _check_supported(cls.layout)
    num_classes = _num_classes(source)
    with torch.device("meta"):
        target = cls(num_classes=num_classes, backend=backend)
    if not isinstance(source, FCN):
        _check_foreign_layout(source, target, num_classes)
    device = _model_device(source)
    if device.type == "meta":
        raise ValueError("optimize() needs a model with real weights, not one on the meta device")
    target_dtype = dtype or _model_dtype(source)

    # Weights: same names in fcnfast and pytorch-fcn (ConvTranspose2d.weight -> UpsampleCropAdd.weight).
    src_state = {k: v for k, v in source.state_dict().items()}
    layout = target.layout
    for name in layout.head_names:  # a head with a bias (not FCN's, but representable): give the target one
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
    # skip score layer -> the scale of its input, to fold into its weight (1.0: nothing to fold)
    scale_of_pool = dict(zip(SCALED_POOLS, scales))
    fold = {stage.skip_score: scale_of_pool[stage.skip_pool] for stage in layout.skip_stages}
    runtime_scales = {layer: 1.0 for layer in fold}
    state: Dict[str, Tensor] = {}
    conv_layers = set(layout.conv_layers)
    for key in expected:
        tensor = src_state[key].detach()
        layer = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and fold.get(layer, 1.0) != 1.0:
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
    for stage in layout.skip_stages:
        setattr(target, pool_scale_attr(stage.skip_pool), runtime_scales[stage.skip_score])
    folded = [f"{layer} x{fold[layer]:g}" for layer in fold if fold[layer] != 1.0 and runtime_scales[layer] == 1.0]
    kept = [f"{layer} input x{runtime_scales[layer]:g}" for layer in fold if runtime_scales[layer] != 1.0]
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
    if not isinstance(cpu_route, bool):
        raise TypeError(f"cpu_route must be a bool, got {cpu_route!r}")
    return OptimizedFCN(target, channels_last=channels_last, cuda_graph=cuda_graph, notes=tuple(notes),
                        cpu_route=cpu_route)
