"""The memory a forward needs, estimated from the model's geometry, and what segment does with it (issue 11 #11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fcnfast.cli import main
from fcnfast.models import MODEL_NAMES, build_model, model_layout
from fcnfast.models.memory import inference_bytes, largest_activation, parameter_count


@pytest.mark.parametrize("name", [*MODEL_NAMES, "fcn8s-atonce"])
def test_parameter_count_matches_the_models(name):
    """Every network of the release (two streams, two tasks, RGB-D included), and an older name."""
    with torch.device("meta"):
        for classes in (None, (5,) * len(model_layout(name).tasks)):
            model = build_model(name, num_classes=classes)
            assert parameter_count(name, classes) == sum(p.numel() for p in model.state_dict().values())


def test_the_padded_canvas_dominates():
    # conv1 runs on (H+198) x (W+198) with 64 channels, whatever the image.
    assert largest_activation(3000, 4000, 21) == 64 * 3198 * 4198
    assert largest_activation(1, 1, 21) == 64 * 199 * 199
    # The photo: a few GB of weights-free activations, far above a 500x500 image.
    big, voc = inference_bytes("fcn8s", 21, 3000, 4000), inference_bytes("fcn8s", 21, 500, 500)
    assert 8e9 < big < 12e9 and voc < 1.5e9
    assert inference_bytes("fcn8s", 21, 500, 500, batch=2) > voc


def test_the_estimate_covers_a_measured_forward():
    """The pooled sizes follow the model: the estimate's activations are those of a real forward."""
    model = build_model("fcn8s", num_classes=21).eval()
    x = torch.randn(1, 3, 37, 51)
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel()))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert max(sizes) == largest_activation(37, 51, 21)


@pytest.fixture
def photo(tmp_path):
    """600x800 (HxW): big enough that its activations, not the weights, set the memory it needs."""
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((600, 800, 3), 120, np.uint8)).save(path)
    return path


@pytest.fixture
def cheap_forward(monkeypatch):
    """The forward of the optimized model as all-background scores: these tests are about what
    happens around it."""
    import fcnfast.optimized_fcn as optimized_fcn

    monkeypatch.setattr(optimized_fcn.OptimizedFCN, "__call__",
                        lambda self, x: torch.zeros(x.shape[0], 21, *x.shape[2:]))


def _pretend_available(monkeypatch, size):
    import fcnfast.devices as devices

    monkeypatch.setattr(devices, "available_memory", lambda device: size)


def _segment(photo, tmp_path):
    return main(["segment", str(photo), "-o", str(tmp_path / "out"), "--device", "cpu", "--model", "fcn32s"])


def test_segment_warns_before_a_forward_that_needs_too_much_and_offers_max_side(photo, tmp_path, capsys, monkeypatch,
                                                                                cheap_forward):
    from fcnfast.commands._checks import MEMORY_SHARE

    need = inference_bytes("fcn32s", 21, 600, 800)
    available = int(need * 1.5)  # the forward needs more than half of it
    _pretend_available(monkeypatch, available)
    assert _segment(photo, tmp_path) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "photo: 600x800 (HxW) needs about" in warning[0], warning
    side = int(warning[0].split("--max-side ")[1].split()[0])
    assert inference_bytes("fcn32s", 21, round(600 * side / 800), side) <= MEMORY_SHARE * available
    assert inference_bytes("fcn32s", 21, round(600 * (side + 1) / 800), side + 1) > MEMORY_SHARE * available

    # With that --max-side, or plenty of memory, no warning.
    assert main(["segment", str(photo), "-o", str(tmp_path / "out"), "--device", "cpu", "--model", "fcn32s",
                 "--max-side", str(side)]) == 0
    assert "warning" not in capsys.readouterr().err
    _pretend_available(monkeypatch, need * 10)
    assert _segment(photo, tmp_path) == 0
    assert "warning" not in capsys.readouterr().err


def test_running_out_of_memory_is_one_line_with_the_advice(photo, tmp_path, capsys, monkeypatch):
    import fcnfast.optimized_fcn as optimized_fcn

    def allocator_fails(self, x):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 3439329280 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(optimized_fcn.OptimizedFCN, "__call__", allocator_fails)
    _pretend_available(monkeypatch, inference_bytes("fcn32s", 21, 600, 800))
    rc = _segment(photo, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fcnfast segment: error: out of memory segmenting photo: 600x800 (HxW) needs about")
    assert "--max-side" in last
