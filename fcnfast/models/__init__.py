"""FCN models with Caffe geometry, checkpoint loading and VGG16 initialisation.

Layers flow one way: ``layout`` (the declared geometry) -> ``weights`` (checkpoints) -> ``fcn``
(the classes) -> ``registry`` (names) -> ``loading`` (the model a checkpoint holds). Name models
through the registry.
"""

from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .registry import (
    DEFAULT_MODEL, MODEL_NAMES, MODELS, build_model, canonical_model_name, lookup_model_name, model_class,
    model_name_of,
)
from .weights import load_weights, read_state_dict, unwrap_state_dict, vgg16_init
from .loading import checkpoint_model, load_model

__all__ = [
    "FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "MODELS", "MODEL_NAMES", "DEFAULT_MODEL", "build_model",
    "canonical_model_name", "lookup_model_name", "model_class", "model_name_of",
    "load_weights", "read_state_dict", "unwrap_state_dict", "vgg16_init", "checkpoint_model", "load_model",
]
