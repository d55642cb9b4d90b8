"""fcnfast: exact FCN semantic segmentation (every network of the FCN release) with fused
upsample + skip + crop kernels.

    import fcnfast
    model = fcnfast.FCN8s().eval()          # Caffe geometry, fused heads on the best backend
    nets = fcnfast.build_model("siftflow-fcn16s"), fcnfast.load_caffemodel("fcn8s-heavy-pascal.caffemodel", "voc-fcn8s")
    out = fcnfast.upsample_crop_add(x, w, 8, offset=31, size=(500, 500), skip=s, skip_offset=9)
"""

from .backends import available_backends
from .models import (
    FCN8s, FCN8sAtOnce, FCN16s, FCN32s, build_model, convert_caffemodel, load_caffemodel, load_weights, vgg16_init,
)
from .nn import UpsampleCropAdd
from .ops import is_channel_diagonal, upsample_crop_add
from ._version import __version__
from .optimize import OptimizedFCN, optimize
from .export import export_onnx

__all__ = [
    "upsample_crop_add",
    "is_channel_diagonal",
    "available_backends",
    "UpsampleCropAdd",
    "FCN32s",
    "FCN16s",
    "FCN8s",
    "FCN8sAtOnce",
    "build_model",
    "load_weights",
    "load_caffemodel",
    "convert_caffemodel",
    "vgg16_init",
    "optimize",
    "OptimizedFCN",
    "export_onnx",
    "__version__",
]
