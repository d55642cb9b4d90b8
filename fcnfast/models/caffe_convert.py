"""The release's caffemodels as fcnfast weights: blobs mapped to parameters by layer name.

    model = load_caffemodel("fcn8s-heavy-pascal.caffemodel", "voc-fcn8s")       # an FCN8s with the weights
    convert_caffemodel("fcn8s-heavy-pascal.caffemodel", "voc-fcn8s", "fcn8s.pth")

fcnfast's modules carry Caffe's layer names, so each learnable layer of the network maps to one
Caffe layer of the same name: a Convolution's blobs are (weight out x in x k x k, bias), a
Deconvolution's one weight in x out x k x k, which is also PyTorch's layout, so values copy
unchanged. FCN-8s-at-once's Scale layers (``scale_pool4``, ``scale_pool3``) hold the fixed input
scales of the skips; they are checked against the layout (one value everywhere, equal to it) and
are not parameters. Layers without blobs (data, ReLU, pooling, crops, losses) are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..caffemodel import CaffeLayer, CaffeNet, read_caffemodel
from ..checkpoints import save_checkpoint
from .fcn import FCN, ClassCounts
from .layout import SCALE_LAYER, SCALED_POOLS, pool_channels, pool_scale_attr
from .registry import build_model, canonical_model_name

__all__ = ["CaffeConversionError", "caffe_layer_shapes", "caffemodel_state_dict", "load_caffemodel",
           "convert_caffemodel"]

Shape = Tuple[int, ...]


class CaffeConversionError(ValueError):
    """A caffemodel that does not fit the network it was given for; the message lists every problem."""


def _scale_layers(model: FCN) -> Dict[str, Tuple[int, float]]:
    """Caffe Scale layer -> (channels, value) for the pools the model scales before scoring."""
    scored = {stage.skip_pool for stage in model.layout.skip_stages}
    return {
        SCALE_LAYER.format(pool=pool): (pool_channels(pool), float(getattr(model, pool_scale_attr(pool))))
        for pool in SCALED_POOLS if pool in scored and float(getattr(model, pool_scale_attr(pool))) != 1.0
    }


def _parameter_layers(model: FCN) -> Dict[str, nn.Module]:
    layout = model.layout
    return {name: getattr(model, name) for name in (*layout.conv_layers, *layout.head_names)}


def caffe_layer_shapes(model: FCN) -> Dict[str, List[Shape]]:
    """Every learnable Caffe layer of ``model``'s network and the shapes of its blobs, in Caffe's
    order (weight, then bias): what its caffemodel must hold. Works on the meta device."""
    shapes = {name: [tuple(p.shape) for p in (module.weight, module.bias) if p is not None]
              for name, module in _parameter_layers(model).items()}
    shapes.update({name: [(channels,)] for name, (channels, _) in _scale_layers(model).items()})
    return shapes


def _fits(blob_shape: Shape, legacy: bool, want: Shape) -> bool:
    if not legacy:
        return tuple(blob_shape) == tuple(want)

    def strip(shape):  # the old 4-D form pads shapes with leading ones
        shape = list(shape)
        while shape and shape[0] == 1:
            shape.pop(0)
        return shape

    return strip(blob_shape) == strip(want)


def _shape_text(shape: Shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _class_hint(net: CaffeNet, model: FCN) -> str:
    layout = model.layout
    first = layout.score_name(layout.tasks[0], layout.streams[0])
    layer = next((lay for lay in net.layers if lay.name == first and lay.blobs), None)
    if layer is None:
        return ""
    classes = layer.blobs[0].shape[0]  # the output channels lead in both the new and the 4-D form
    if classes == model.task_classes[0]:
        return ""
    return (f" (its {first} scores {classes} classes, {layout.name} {model.task_classes[0]}: pass the network it was "
            f"trained as, or num_classes / --num-classes {classes})")


def _list(items: List[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def caffemodel_state_dict(source: Union[str, os.PathLike, CaffeNet], model: FCN) -> Dict[str, Tensor]:
    """The state dict of ``model`` (any device, meta included: only its names and shapes are read)
    filled from the caffemodel ``source`` (a path or a :func:`fcnfast.caffemodel.read_caffemodel`
    result). Float blobs copy exactly; double blobs are rounded to the parameter's dtype.

    Raises FileNotFoundError / :class:`fcnfast.caffemodel.CaffeModelError` for a missing or unreadable
    file, and :class:`CaffeConversionError` naming every missing and unexpected layer, every blob
    count or shape that differs, and every Scale layer whose value is not the layout's.
    """
    net = source if isinstance(source, CaffeNet) else read_caffemodel(source)
    where = f"caffemodel {source}" if not isinstance(source, CaffeNet) else f"caffemodel {net.name or '(unnamed)'}"
    expected = caffe_layer_shapes(model)
    layers: Dict[str, CaffeLayer] = {}
    problems: List[str] = []
    for layer in net.layers:
        if layer.blobs:
            if layer.name in layers:
                problems.append(f"layer {layer.name!r} appears twice with blobs")
            layers[layer.name] = layer
    missing = [name for name in expected if name not in layers]
    unexpected = [name for name in layers if name not in expected]
    if missing:
        problems.append(f"missing layers: {_list(missing)}")
    if unexpected:
        problems.append(f"unexpected layers: {_list(unexpected)}")
    mis_shaped: List[str] = []
    for name, shapes in expected.items():
        layer = layers.get(name)
        if layer is None:
            continue
        if len(layer.blobs) != len(shapes):
            problems.append(f"{name} has {len(layer.blobs)} blob(s), {model.layout.name}'s {name} takes {len(shapes)}")
            continue
        for i, (blob, want) in enumerate(zip(layer.blobs, shapes)):
            if not _fits(blob.shape, blob.legacy, want):
                mis_shaped.append(f"{name} blob {i} {_shape_text(blob.shape)} != {_shape_text(want)}")
    if mis_shaped:
        problems.append(f"wrong shapes (caffemodel != model): {_list(mis_shaped)}{_class_hint(net, model)}")
    for name, (_, value) in _scale_layers(model).items():
        layer = layers.get(name)
        if layer is None or len(layer.blobs) != 1 or layer.blobs[0].data.size == 0:
            continue
        data = layer.blobs[0].data
        if not np.all(data == np.float32(value)):
            found = f"{float(data.flat[0]):g}" if np.all(data == data.flat[0]) else "per-channel values"
            problems.append(f"{name} scales by {found}, but {model.layout.name} scales by {value:g}")
    if problems:
        raise CaffeConversionError(f"{where} does not fit {model.layout.name}: " + "; ".join(problems))
    state: Dict[str, Tensor] = {}
    for name, module in _parameter_layers(model).items():
        params = [(suffix, p) for suffix, p in (("weight", module.weight), ("bias", module.bias)) if p is not None]
        for blob, (suffix, param) in zip(layers[name].blobs, params):
            # A copy in the parameter's dtype (the blobs are read-only views of the file's bytes).
            array = np.array(blob.data.reshape(param.shape), dtype=np.float32)
            state[f"{name}.{suffix}"] = torch.from_numpy(array).to(param.dtype)
    return state


def load_caffemodel(source: Union[str, os.PathLike], name: str, num_classes: Optional[ClassCounts] = None,
                    backend: Optional[str] = None) -> FCN:
    """A new model ``name`` (any registry spelling; ``num_classes`` as :func:`build_model` takes it)
    holding the caffemodel's weights. Raises as :func:`caffemodel_state_dict` does."""
    with torch.device("meta"):
        shell = build_model(name, num_classes, backend)
    state = caffemodel_state_dict(source, shell)
    model = build_model(name, num_classes, backend)
    nn.Module.load_state_dict(model, state, strict=True)
    return model


def convert_caffemodel(source: Union[str, os.PathLike], name: str, output: Union[str, os.PathLike],
                       num_classes: Optional[ClassCounts] = None) -> Path:
    """Write the caffemodel's weights for model ``name`` to ``output`` (atomically) as an fcnfast
    checkpoint: ``{"arch", "num_classes", "model_state_dict", "converted_from"}``, which
    :func:`fcnfast.load_weights`, ``fcnfast evaluate --checkpoint`` and ``train --weights`` read.
    Returns the output path. Raises as :func:`caffemodel_state_dict` does."""
    canonical = canonical_model_name(name)
    with torch.device("meta"):
        shell = build_model(canonical, num_classes)
    state = caffemodel_state_dict(source, shell)
    output = Path(output)
    counts = shell.num_classes if isinstance(shell.num_classes, int) else list(shell.num_classes)
    save_checkpoint({"arch": canonical, "num_classes": counts, "model_state_dict": state,
                     "converted_from": Path(source).name}, output)
    return output
