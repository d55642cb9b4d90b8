"""FCN models with Caffe geometry, checkpoint loading and VGG16 initialisation."""

from .fcn import FCN8s, FCN8sAtOnce, FCN16s, FCN32s, MODELS, build_model
from .weights import load_weights, read_state_dict, unwrap_state_dict, vgg16_init

__all__ = [
    "FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "MODELS", "build_model",
    "load_weights", "read_state_dict", "unwrap_state_dict", "vgg16_init",
]
