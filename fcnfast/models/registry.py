"""The model registry: the one place that turns a model name into an FCN class or model.

    build_model("fcn8s", num_classes=21)       # an FCN8s
    canonical_model_name("FCN8s_AtOnce")       # "fcn8s-atonce"
    model_name_of(model)                       # "fcn16s" for an FCN16s (or a subclass of it)

Names are the layouts' (:data:`fcnfast.models.layout.LAYOUTS`): fcn32s, fcn16s, fcn8s,
fcn8s-atonce. A name is accepted in any case, with "_" for "-", and as its class name
(pytorch-fcn's ``arch``, e.g. "FCN8sAtOnce"); everything else is a ValueError listing the names.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Type, Union

from torch import nn

from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s, _FCNBase
from .layout import LAYOUTS

#: Every model name, in the order help texts and errors list them.
MODEL_NAMES: Tuple[str, ...] = tuple(LAYOUTS)
DEFAULT_MODEL = "fcn8s"
#: "fcn32s, fcn16s, fcn8s or fcn8s-atonce", for help texts.
MODEL_NAMES_TEXT = ", ".join(MODEL_NAMES[:-1]) + " or " + MODEL_NAMES[-1]

_CLASSES = {cls.layout.name: cls for cls in (FCN32s, FCN16s, FCN8s, FCN8sAtOnce)}
#: name -> class, in :data:`MODEL_NAMES` order (tests check that every layout has its class).
MODELS: Dict[str, Type[_FCNBase]] = {name: _CLASSES[name] for name in MODEL_NAMES if name in _CLASSES}

# Accepted spellings after lower-casing and "_" -> "-": the names and the class names.
_ALIASES: Dict[str, str] = {
    **{cls.__name__.lower(): name for name, cls in MODELS.items()},
    **{name: name for name in MODEL_NAMES},
}


def lookup_model_name(name: object) -> Optional[str]:
    """The registry name ``name`` spells (see the module docstring), or None (also for non-strings:
    a checkpoint's ``arch`` may be anything)."""
    if not isinstance(name, str):
        return None
    return _ALIASES.get(name.lower().replace("_", "-"))


def canonical_model_name(name: str) -> str:
    """The registry name ``name`` spells ("FCN8s" -> "fcn8s"). Raises TypeError for a non-string and
    ValueError, listing the valid names, for an unknown one."""
    if not isinstance(name, str):
        raise TypeError(f"a model name must be a str, got {type(name).__name__} {name!r}")
    canonical = lookup_model_name(name)
    if canonical is None:
        raise ValueError(
            f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)} "
            f"(case and '_' / '-' do not matter; class names such as FCN8sAtOnce work too)"
        )
    return canonical


def model_class(name: str) -> Type[_FCNBase]:
    """The fcnfast class of model ``name`` (any accepted spelling)."""
    return MODELS[canonical_model_name(name)]


def build_model(name: str, num_classes: int = 21, backend: Optional[str] = None) -> _FCNBase:
    """``build_model("fcn8s")``: a new model by name (fcn32s, fcn16s, fcn8s, fcn8s-atonce; any
    accepted spelling), initialised as the paper does (see :class:`fcnfast.models.fcn._FCNBase`)."""
    return model_class(name)(num_classes=num_classes, backend=backend)


def model_name_of(model: Union[nn.Module, type]) -> Optional[str]:
    """The registry name of an fcnfast model or class: that of the nearest registered class in its
    MRO (a subclass of FCN8s is "fcn8s"); None for anything else."""
    cls = model if isinstance(model, type) else type(model)
    registered = {c: name for name, c in MODELS.items()}
    return next((registered[c] for c in cls.__mro__ if c in registered), None)


__all__ = [
    "MODEL_NAMES", "DEFAULT_MODEL", "MODEL_NAMES_TEXT", "MODELS", "lookup_model_name",
    "canonical_model_name", "model_class", "build_model", "model_name_of",
]
