"""How much memory an FCN forward needs, from the model's geometry (:mod:`.layout`) alone.

conv1_1 pads its input by 100, so the first two convolutions run on an (H+198) x (W+198) canvas
with 64 channels: at 4000x3000 each of their outputs is 3.4 GB in float32, and they dominate
every other activation. An inference forward holds a convolution's input and output at once,
and as much again for the convolution's own buffers (oneDNN's reordered copy on the CPU,
cuDNN's workspace on a GPU): FCN-8s on the CPU peaks at 3.0x its largest activation above the
weights (measured at 1000x800 and 1500x1200). :func:`inference_bytes` is that estimate, which
``fcnfast segment`` compares with the memory available before each image.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

from .layout import (
    CONV_KERNEL, CONV_PADDING, FC6_KERNEL, FC_CHANNELS, FIRST_CONV_PADDING, POOL_KERNEL, POOL_STRIDE, VGG16_BLOCKS,
    pool_channels,
)
from .fcn import ClassCounts, _task_classes
from .registry import model_layout

__all__ = ["ACTIVATION_FACTOR", "inference_bytes", "largest_activation", "parameter_count"]

#: Peak activation memory of an inference forward, in multiples of its largest activation.
ACTIVATION_FACTOR = 3


def _feature_sizes(height: int, width: int) -> Iterator[int]:
    """Elements per image of each backbone activation, in forward order."""
    h, w = height, width
    for block, (_, cout, convs) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(convs):
            pad = FIRST_CONV_PADDING if (block, i) == (1, 0) else CONV_PADDING
            h, w = h + 2 * pad - CONV_KERNEL + 1, w + 2 * pad - CONV_KERNEL + 1
            yield cout * h * w
        # Caffe's (ceil-mode) pooling: ceil((n - k) / s) + 1
        h = math.ceil((h - POOL_KERNEL) / POOL_STRIDE) + 1
        w = math.ceil((w - POOL_KERNEL) / POOL_STRIDE) + 1
        yield cout * h * w
    h, w = max(h - FC6_KERNEL + 1, 1), max(w - FC6_KERNEL + 1, 1)
    yield FC_CHANNELS * h * w  # fc6, then fc7 of the same size


def largest_activation(height: int, width: int, num_classes: int) -> int:
    """Elements per image of the largest activation of a forward at ``height`` x ``width``:
    conv1's output on the padded canvas, or the scores at full size with many classes."""
    return max(max(_feature_sizes(height, width)), num_classes * height * width)


def parameter_count(name: str, num_classes: Optional[ClassCounts] = None) -> int:
    """Parameters of model ``name`` (any spelling the registry accepts) with ``num_classes`` classes
    (as models take it: an int, one per task, or None for the release's)."""
    layout = model_layout(name)
    counts = _task_classes(layout, num_classes)
    count = 0
    for stream in layout.streams:
        for block, (cin, cout, convs) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(convs):
                first = stream.channels if (block, i) == (1, 0) else (cin if i == 0 else cout)
                count += first * cout * CONV_KERNEL ** 2 + cout
        last = VGG16_BLOCKS[-1][1]
        count += last * FC_CHANNELS * FC6_KERNEL ** 2 + FC_CHANNELS  # fc6
        count += FC_CHANNELS * FC_CHANNELS + FC_CHANNELS  # fc7
    for classes in counts:
        count += len(layout.streams) * (FC_CHANNELS + 1) * classes  # score_fr of each stream
        count += sum((pool_channels(stage.skip_pool) + 1) * classes for stage in layout.skip_stages)
        count += sum(classes ** 2 * stage.kernel ** 2 for stage in layout.heads)
    return count


def inference_bytes(name: str, num_classes: Optional[ClassCounts], height: int, width: int, batch: int = 1,
                    element_size: int = 4) -> int:
    """Estimated peak memory in bytes of an inference forward of model ``name`` (classes as in
    :func:`parameter_count`) on a ``batch`` of ``height`` x ``width`` inputs: the weights plus
    :data:`ACTIVATION_FACTOR` times the largest activation (see the module docstring); the score
    maps of several tasks count together."""
    layout = model_layout(name)
    outputs = sum(_task_classes(layout, num_classes))
    activations = ACTIVATION_FACTOR * batch * largest_activation(height, width, outputs)
    return element_size * (parameter_count(name, num_classes) + activations)
