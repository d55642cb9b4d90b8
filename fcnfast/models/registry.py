"""The model registry: the one place that turns a model name into an FCN class or model.

    build_model("voc-fcn8s")                   # an FCN8s with 21 classes (the release's)
    build_model("siftflow-fcn16s")             # two outputs: 33 semantic, 3 geometric classes
    canonical_model_name("FCN8s_AtOnce")       # "voc-fcn8s-atonce"
    model_name_of(model)                       # "voc-fcn16s" for an FCN16s (or a subclass of it)

Names are the release's folder names (:data:`fcnfast.models.layout.LAYOUTS`). A name is accepted
in any case, with "_" for "-", as one of the layout's older names (fcn32s, fcn16s, fcn8s,
fcn8s-atonce) and as its class name (pytorch-fcn's ``arch``, e.g. "FCN8sAtOnce"); everything else
is a ValueError listing the names.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Type, Union

from torch import nn

from .fcn import LAYOUT_CLASSES, FCN, ClassCounts
from .layout import LAYOUTS, ModelLayout

#: Every model name, in the order help texts and errors list them.
MODEL_NAMES: Tuple[str, ...] = tuple(LAYOUTS)
DEFAULT_MODEL = "voc-fcn8s"
#: "voc-fcn32s, ... or siftflow-fcn8s", for help texts.
MODEL_NAMES_TEXT = ", ".join(MODEL_NAMES[:-1]) + " or " + MODEL_NAMES[-1]

#: name -> class, in :data:`MODEL_NAMES` order.
MODELS: Dict[str, Type[FCN]] = dict(LAYOUT_CLASSES)

# Accepted spellings after lower-casing and "_" -> "-": the names, their aliases and the class names.
_ALIASES: Dict[str, str] = {
    **{cls.__name__.lower(): name for name, cls in MODELS.items()},
    **{alias: layout.name for layout in LAYOUTS.values() for alias in layout.aliases},
    **{name: name for name in MODEL_NAMES},
}


def lookup_model_name(name: object) -> Optional[str]:
    """The registry name ``name`` spells (see the module docstring), or None (also for non-strings:
    a checkpoint's ``arch`` may be anything)."""
    if not isinstance(name, str):
        return None
    return _ALIASES.get(name.lower().replace("_", "-"))


def canonical_model_name(name: str) -> str:
    """The registry name ``name`` spells ("FCN8s" -> "voc-fcn8s"). Raises TypeError for a non-string
    and ValueError, listing the valid names, for an unknown one."""
    if not isinstance(name, str):
        raise TypeError(f"a model name must be a str, got {type(name).__name__} {name!r}")
    canonical = lookup_model_name(name)
    if canonical is None:
        raise ValueError(
            f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)} (case and '_' / '-' do not "
            f"matter; the older names fcn32s .. fcn8s-atonce and class names such as FCN8sAtOnce work too)"
        )
    return canonical


def model_layout(name: str) -> ModelLayout:
    """The layout of model ``name`` (any accepted spelling)."""
    return LAYOUTS[canonical_model_name(name)]


def model_class(name: str) -> Type[FCN]:
    """The fcnfast class of model ``name`` (any accepted spelling)."""
    return MODELS[canonical_model_name(name)]


def build_model(name: str, num_classes: Optional[ClassCounts] = None, backend: Optional[str] = None) -> FCN:
    """``build_model("voc-fcn8s")``: a new model by name (any accepted spelling) with the release's
    class counts unless ``num_classes`` says otherwise, initialised as the paper does (see
    :class:`fcnfast.models.fcn.FCN`)."""
    return model_class(name)(num_classes=num_classes, backend=backend)


def model_name_of(model: Union[nn.Module, type]) -> Optional[str]:
    """The registry name of an fcnfast model or class: that of the nearest registered class in its
    MRO (a subclass of FCN8s is "voc-fcn8s"); None for anything else."""
    cls = model if isinstance(model, type) else type(model)
    registered = {c: name for name, c in MODELS.items()}
    return next((registered[c] for c in cls.__mro__ if c in registered), None)


__all__ = [
    "MODEL_NAMES", "DEFAULT_MODEL", "MODEL_NAMES_TEXT", "MODELS", "lookup_model_name", "canonical_model_name",
    "model_layout", "model_class", "build_model", "model_name_of",
]
