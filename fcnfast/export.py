"""ONNX export: an FCN as a standard ONNX graph with dynamic batch, height and width.

    fcnfast.export_onnx(model, "fcn8s.onnx")          # any fcnfast model, OptimizedFCN or pytorch-fcn module
    fcnfast export CHECKPOINT -o fcn8s.onnx           # the same from the command line

The fused head op has no ONNX counterpart, so each :class:`fcnfast.nn.UpsampleCropAdd` the model
holds, wherever it sits, is traced through its ``forward_plain``: ConvTranspose, then Slice (the
crop), then Add (the skip). Nothing here names a model class or a head: a new network built from
UpsampleCropAdd stages exports as it is. ONNX Runtime and TensorRT run the file; its outputs equal
the model's within float rounding (tests/test_export.py checks it on random odd sizes).

The graph comes from ``torch.onnx.export(dynamo=True)`` (which needs the ``onnx`` and
``onnxscript`` packages). Input ``image`` is (batch, channels, height, width), output ``scores``
is (batch, classes, height, width), every size >= 1. A network of the release with two trunks
takes one input per trunk, named after what it reads (``color``, ``hha``); one with two heads
gives one output per head (``scores_semantic``, ``scores_geometric``): :func:`io_names`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
from typing import Iterator, Optional, Tuple

import torch
from torch import nn

from .nn import UpsampleCropAdd
from .optimized_fcn import unwrap_optimized

__all__ = ["export_onnx", "io_names", "plain_heads", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME = "image"
OUTPUT_NAME = "scores"
# The size the graph is traced at; any size gives the same graph (height and width stay symbolic).
SAMPLE_SIZE = (37, 41)
# ONNX's protobuf limit: above it the weights must go to a side file.
_PROTOBUF_LIMIT = 2**31 - 2**26


@contextlib.contextmanager
def plain_heads(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every UpsampleCropAdd inside ``model`` runs ``forward_plain``."""
    heads = [m for m in model.modules() if isinstance(m, UpsampleCropAdd)]
    for head in heads:
        head.forward = head.forward_plain  # an instance attribute: nn.Module.__call__ takes it
    try:
        yield model
    finally:
        for head in heads:
            del head.forward


def _exportable(model: nn.Module) -> nn.Module:
    """The module that computes ``model``'s scores: wrappers and OptimizedFCN removed, and a
    contiguous copy where weights are channels_last (optimize()'s): their strides make
    torch.export specialise the batch and image sizes."""
    model = unwrap_optimized(model)
    if not all(p.is_contiguous() for p in model.parameters()):
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    return model


def io_names(model: nn.Module) -> Tuple[Tuple[Tuple[str, int], ...], Tuple[str, ...]]:
    """(((input name, channels), ...), (output name, ...)) of ``model``'s export: from an fcnfast
    model's layout (its streams and tasks), else one RGB ``image`` in and ``scores`` out."""
    model = unwrap_optimized(model)
    layout = getattr(model, "layout", None)
    if layout is None:
        return ((INPUT_NAME, 3),), (OUTPUT_NAME,)
    streams, labels = layout.streams, layout.labels
    inputs = (((INPUT_NAME, streams[0].channels),) if len(streams) == 1
              else tuple(("_".join(s.modalities), s.channels) for s in streams))
    outputs = (OUTPUT_NAME,) if len(labels) == 1 else tuple(f"{OUTPUT_NAME}_{label}" for label in labels)
    return inputs, outputs


def _dynamic_shapes(model: nn.Module, count: int, dims) -> tuple:
    """torch.export's dynamic_shapes for ``count`` image inputs sharing ``dims`` (batch, height,
    width): nested as the forward's parameters are, ``forward(*inputs)`` (fcnfast) taking them
    all as one tuple, ``forward(x)`` (pytorch-fcn) one each."""
    batch, height, width = dims
    per_input = tuple({0: batch, 2: height, 3: width} for _ in range(count))
    params = list(inspect.signature(model.forward).parameters.values())
    return (per_input,) if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL else per_input


def _first_param(model: nn.Module) -> torch.Tensor:
    for p in model.parameters():
        if p.is_floating_point():
            return p
    raise ValueError(f"{type(model).__name__} has no floating-point parameters to export")


def export_onnx(model: nn.Module, path: "str | os.PathLike", *, opset: Optional[int] = None,
                sample_size: Tuple[int, int] = SAMPLE_SIZE) -> str:
    """Write ``model`` as an ONNX file at ``path``; returns the path written.

    ``model`` is an fcnfast FCN (any registered model), the :class:`OptimizedFCN` that
    :func:`fcnfast.optimize` returns, or a plain PyTorch FCN such as pytorch-fcn's; it is traced
    in eval mode on its own device and dtype and left as it was. Batch, height and width are
    dynamic (``sample_size`` only picks the traced example). ``opset`` None is the exporter's
    default. Weights over ONNX's 2 GB limit go to ``<path>.data`` beside the file.

    Raises TypeError for a non-module, ValueError for a model without float weights and
    RuntimeError (with torch's reason) when tracing fails.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"export_onnx() expects an nn.Module (an FCN), got {type(model).__name__}")
    net = _exportable(model)
    weight = _first_param(net)
    if len(sample_size) != 2 or min(sample_size) < 1:
        raise ValueError(f"sample_size must be (height, width) >= 1, got {sample_size!r}")
    path = os.fspath(path)
    inputs, outputs = io_names(net)
    samples = tuple(torch.zeros(1, channels, *sample_size, device=weight.device, dtype=weight.dtype)
                    for _, channels in inputs)
    # One set of Dims for every input: the trunks' inputs share batch, height and width.
    batch, height, width = (torch.export.Dim(n, min=1) for n in ("batch", "height", "width"))
    size_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    was_training = net.training
    net.eval()
    try:
        with plain_heads(net), torch.no_grad():
            torch.onnx.export(
                net, samples, path, input_names=[name for name, _ in inputs], output_names=list(outputs),
                opset_version=opset, dynamo=True, dynamic_shapes=_dynamic_shapes(net, len(inputs), (batch, height, width)),
                external_data=size_bytes > _PROTOBUF_LIMIT, verbose=False,
            )
    except ImportError as exc:
        raise RuntimeError(f"ONNX export needs the onnx and onnxscript packages ({exc}); "
                           f"pip install onnx onnxscript") from exc
    finally:
        net.train(was_training)
    return path
