"""The FCN reference release's networks with Caffe geometry, checkpoint loading, VGG16
initialisation and the conversion of the release's caffemodels.

Layers flow one way: ``layout`` (the declared geometry) -> ``weights`` (checkpoints) -> ``fcn``
(the classes) -> ``registry`` (names) -> ``caffe_convert`` (caffemodels) and ``loading`` (the model a
checkpoint holds). Name models through the registry.
"""

from .caffe_convert import convert_caffemodel, load_caffemodel
from .fcn import FCN, FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .registry import (
    DEFAULT_MODEL, MODEL_NAMES, MODELS, build_model, canonical_model_name, lookup_model_name, model_class,
    model_layout, model_name_of,
)
from .loading import checkpoint_model, load_model
from .weights import load_weights, read_state_dict, unwrap_state_dict, vgg16_init

__all__ = [
    "FCN", "FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "MODELS", "MODEL_NAMES", "DEFAULT_MODEL", "build_model",
    "canonical_model_name", "lookup_model_name", "model_class", "model_layout", "model_name_of",
    "load_weights", "read_state_dict", "unwrap_state_dict", "vgg16_init", "convert_caffemodel", "load_caffemodel",
    "checkpoint_model", "load_model",
]
