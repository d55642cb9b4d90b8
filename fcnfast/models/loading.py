"""The model a checkpoint holds: its architecture and class count read from the file itself.

``fcnfast segment``, ``bench`` and ``evaluate`` build their model here, so a checkpoint of any
FCN variant and class count loads without ``--model`` / ``--num-classes``. The architecture is
the checkpoint's ``arch`` (fcnfast's or pytorch-fcn's name), else the one whose upsampling layers
the state dict has; the class count is its ``num_classes``, else its final score layers' rows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional, Tuple, Union

from torch import Tensor, nn

from ..checkpoints import read_checkpoint
from .layout import LAYOUTS
from .registry import DEFAULT_MODEL, build_model, canonical_model_name, lookup_model_name, model_layout
from .weights import load_weights, unwrap_state_dict

__all__ = ["CheckpointModel", "checkpoint_model", "infer_arch", "infer_num_classes", "load_model"]

def _name(source: Union[str, os.PathLike, Mapping[str, Any]]) -> Optional[str]:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else None


def infer_arch(state: Mapping) -> Optional[str]:
    """The model whose upsampling layers ``state`` holds, exactly ("fcn16s" for upscore2 +
    upscore16); FCN-8s for FCN-8s-at-once, whose parameters are the same. None if none fits."""
    heads = {name for layout in LAYOUTS.values() for name in layout.head_names}
    present = {name for name in heads if f"{name}.weight" in state}
    return next((layout.name for layout in LAYOUTS.values() if set(layout.head_names) == present), None)


def infer_num_classes(state: Mapping, name: str = DEFAULT_MODEL) -> Optional[Union[int, Tuple[int, ...]]]:
    """The classes model ``name`` scores in ``state``: the rows of its first stream's final score
    layer per output (one int, or one per head for a multi-headed network); None when absent."""
    layout = model_layout(name)
    counts = []
    for task in layout.tasks:
        weight = state.get(f"{layout.score_name(task, layout.streams[0])}.weight")
        if not isinstance(weight, Tensor) or weight.dim() < 1:
            return None
        counts.append(int(weight.shape[0]))
    return counts[0] if len(counts) == 1 else tuple(counts)


class CheckpointModel(NamedTuple):
    """What :func:`checkpoint_model` found: the registry ``name``, ``num_classes`` (an int, or one
    per head for a multi-headed network) and the unwrapped ``state`` dict."""

    name: str
    num_classes: Any
    state: dict


def checkpoint_model(source: Union[str, os.PathLike, Mapping[str, Any]], model: Optional[str] = None,
                     num_classes: Optional[int] = None) -> CheckpointModel:
    """The architecture, class count and state dict of ``source`` (a path or a loaded checkpoint).

    ``model`` / ``num_classes``, when given, must agree with what the checkpoint says; a plain
    state dict with nothing to say gets the default model and the model's release class count. Raises FileNotFoundError or
    ValueError (an unreadable file, an unknown model, a disagreement) naming the checkpoint.
    """
    where = _name(source) or "state dict"
    checkpoint = dict(source) if isinstance(source, Mapping) else read_checkpoint(source)
    state = unwrap_state_dict(checkpoint)
    arch = lookup_model_name(checkpoint.get("arch")) or infer_arch(state)
    name = canonical_model_name(model or arch or DEFAULT_MODEL)
    if model is not None and arch is not None and name != arch:
        raise ValueError(f"checkpoint {where} holds a {arch} model, not {name} "
                         f"(drop --model or pass --model {arch})")
    saved = checkpoint.get("num_classes")
    if isinstance(saved, list):  # a multi-headed run's per-head counts
        saved = tuple(saved)
    if not (isinstance(saved, tuple) or (isinstance(saved, int) and not isinstance(saved, bool))):
        saved = infer_num_classes(state, name)
    if isinstance(num_classes, list):
        num_classes = tuple(num_classes)
    if num_classes is not None and saved is not None and num_classes != saved:
        raise ValueError(f"checkpoint {where} has {saved} classes, not {num_classes} "
                         f"(drop --num-classes or pass --num-classes {saved})")
    return CheckpointModel(name, num_classes or saved or model_layout(name).default_num_classes, state)


def load_model(source: Union[str, os.PathLike, Mapping[str, Any]], model: Optional[str] = None,
               num_classes: Optional[int] = None, backend: Optional[str] = None) -> nn.Module:
    """A new model of the checkpoint's architecture and class count (:func:`checkpoint_model`)
    with its weights loaded; raises as :func:`checkpoint_model` and :func:`load_weights` do."""
    found = checkpoint_model(source, model, num_classes)
    net = build_model(found.name, found.num_classes, backend)
    return load_weights(net, found.state, name=_name(source))
