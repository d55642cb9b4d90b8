"""Loading FCN checkpoints and transplanting VGG16 weights, with errors that name the problem."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Dict, Optional, Union

import torch
from torch import Tensor, nn

from ..checkpoints import read_checkpoint
from .layout import CONV_NAMES, Stream

StateDictSource = Union[str, os.PathLike, Mapping]

# torchvision's vgg16: conv layers at these features.N indices, fc6/fc7 at classifier.0/3.
VGG16_FEATURE_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def read_state_dict(source: StateDictSource) -> Dict[str, Tensor]:
    """A state dict from a path or a mapping, unwrapped. A path is read by
    :func:`fcnfast.checkpoints.read_checkpoint` (FileNotFoundError / ValueError naming the file)."""
    if isinstance(source, (str, os.PathLike)):
        return unwrap_state_dict(read_checkpoint(source, mmap=False))
    if isinstance(source, Mapping):
        return unwrap_state_dict(source)
    raise TypeError(f"expected a path or a state dict, got {type(source).__name__}")


# Keys under which checkpoints keep the model's state dict: fcnfast and pytorch-fcn write
# "model_state_dict"; many other trainers (and torchvision's references) write "state_dict".
STATE_DICT_KEYS = ("model_state_dict", "state_dict")


def unwrap_state_dict(state: Mapping) -> Dict[str, Tensor]:
    """Take the state dict out of a checkpoint that holds it under one of :data:`STATE_DICT_KEYS`,
    and drop a ``module.`` prefix (DataParallel / DDP)."""
    for key in STATE_DICT_KEYS:
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    keys = list(state.keys())
    if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _first(items, limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def load_weights(model: nn.Module, source: StateDictSource, *, name: Optional[str] = None) -> nn.Module:
    """Load a checkpoint (path or dict; plain state dict or one holding it, see
    :func:`unwrap_state_dict`).

    Raises FileNotFoundError for a missing file and ValueError naming the checkpoint (``name``,
    else the path) and the first missing, unexpected or mis-shaped keys. Returns ``model``.
    """
    state = read_state_dict(source)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], Tensor) and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if mis_shaped:
        problems.append(f"wrong shapes (checkpoint != model): {_first(mis_shaped)}")
    if problems:
        where = name or (source if isinstance(source, (str, os.PathLike)) else "state dict")
        raise ValueError(f"checkpoint {where} does not fit {type(model).__name__}: " + "; ".join(problems))
    nn.Module.load_state_dict(model, state, strict=True)
    return model


def vgg16_init(model: nn.Module, source: StateDictSource) -> nn.Module:
    """Transplant a VGG16 state dict (torchvision layout: features.N, classifier.N) into conv1_1..fc7
    of every trunk of ``model`` (each stream of a two-stream model gets a copy).

    fc6 (4096x25088) becomes a 4096x512x7x7 conv and fc7 (4096x4096) a 1x1 conv, as in the
    paper's convolutionalisation. A first conv wider than VGG16's 3 input channels (colour +
    depth) takes VGG16's filters on its first 3 channels and their mean over those channels on
    each further one, as the release's surgery does. Score and upsampling layers are left as they are.
    """
    state = read_state_dict(source)
    pairs = [(f"features.{idx}", name) for idx, name in zip(VGG16_FEATURE_INDICES, CONV_NAMES)]
    pairs += [("classifier.0", "fc6"), ("classifier.3", "fc7")]
    needed = [f"{src}.{p}" for src, _ in pairs for p in ("weight", "bias")]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"VGG16 state dict lacks keys: {_first(missing)} (expected torchvision's vgg16 layout)")
    layout = getattr(model, "layout", None)
    streams = layout.streams if layout is not None else (Stream(),)
    with torch.no_grad():
        for stream in streams:
            for src, base in pairs:
                _transplant(getattr(model, stream.layer(base)), state[f"{src}.weight"], state[f"{src}.bias"],
                            src, stream.layer(base))
    return model


def _transplant(layer: nn.Conv2d, weight: Tensor, bias: Tensor, src: str, name: str) -> None:
    extra = layer.in_channels - weight.shape[1] if weight.dim() == 4 else 0
    if extra > 0 and weight.shape[0] == layer.out_channels and weight.shape[2:] == layer.weight.shape[2:]:
        weight = torch.cat([weight, weight.mean(dim=1, keepdim=True).expand(-1, extra, -1, -1)], dim=1)
    if weight.numel() != layer.weight.numel() or bias.shape != layer.bias.shape:
        raise ValueError(
            f"VGG16 {src}.weight {tuple(weight.shape)} / bias {tuple(bias.shape)} cannot fill "
            f"{name}.weight {tuple(layer.weight.shape)} / bias {tuple(layer.bias.shape)}"
        )
    layer.weight.copy_(weight.reshape(layer.weight.shape))
    layer.bias.copy_(bias)
