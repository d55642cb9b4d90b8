"""Every network of the FCN reference release, checked against the release's own prototxt files.

tests/release/layers.json holds, per network, what tests/release/extract_layers.py read from the
release's prototxt (the file each layout names): the blob shapes of every learnable layer, the
pad and stride of every (de)convolution, every Crop offset and every Eltwise coeff. The models are
built on the meta device for the shape checks; the real forwards use tiny inputs.
"""

import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fcnfast.models import MODEL_NAMES, build_model, model_layout
from fcnfast.models.caffe_convert import caffe_layer_shapes
from fcnfast.models.layout import LAYOUTS
from fcnfast.nn import UpsampleCropAdd

RELEASE = json.loads((Path(__file__).parent / "release" / "layers.json").read_text())


@pytest.fixture(scope="module")
def meta_models():
    with torch.device("meta"):
        return {name: build_model(name) for name in MODEL_NAMES}


def test_every_release_network_is_a_layout():
    assert set(RELEASE) == set(LAYOUTS)
    for name, layout in LAYOUTS.items():
        assert RELEASE[name]["prototxt"] == layout.prototxt and layout.prototxt.startswith(name + "/")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_learnable_layers_match_the_prototxt(meta_models, name):
    model = meta_models[name]
    release = RELEASE[name]
    shapes = {layer: [list(s) for s in blobs] for layer, blobs in caffe_layer_shapes(model).items()}
    assert shapes == release["blobs"]
    for layer, geometry in release["geometry"].items():
        module = getattr(model, layer)
        if isinstance(module, UpsampleCropAdd):
            assert module.stride == (geometry["stride"],) * 2, layer
        else:
            assert (module.padding, module.stride) == ((geometry["pad"],) * 2, (geometry["stride"],) * 2), layer
    # The model's state dict is exactly those layers' blobs, under their Caffe names.
    keys = {key.rsplit(".", 1)[0] for key in model.state_dict()}
    assert keys == {layer for layer in release["blobs"] if not layer.startswith("scale_")}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_crops_and_sums_match_the_prototxt(meta_models, name):
    model, layout, release = meta_models[name], LAYOUTS[name], RELEASE[name]
    crops = {}
    for task in layout.tasks:
        last = getattr(model, layout.head_name(layout.heads[-1], task))
        crops["score" + task.suffix] = last.offset[0]
        for stage in layout.skip_stages:
            crops[layout.skip_score_name(stage, task) + "c"] = getattr(model, layout.head_name(stage, task)).skip_offset[0]
    assert crops == release["crops"]
    sums = {f"fuse_pool{stage.skip_pool}{task.suffix}": [1.0, 1.0] for task in layout.tasks for stage in layout.skip_stages}
    if len(layout.streams) > 1:
        sums["score_fused"] = [stream.weight for stream in layout.streams]
    assert sums == release["eltwise_coeffs"]
    scales = {layer: shape[0][0] for layer, shape in release["blobs"].items() if layer.startswith("scale_")}
    assert {f"scale_pool{p}": c for p, c in ((4, 512), (3, 256)) if layout.at_once} == scales
    assert {layer: getattr(model, layer.replace("scale_", "") + "_scale") for layer in scales} == release["scales"]


def _sizes():
    rng = random.Random(1605)
    return [(1, 1), (2, 3), (31, 33), (500, 500), (1, 1100)] + [(rng.randint(1, 700), rng.randint(1, 700)) for _ in range(6)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_outputs_are_full_size_for_any_size(meta_models, name):
    model, layout = meta_models[name], LAYOUTS[name]
    for H, W in _sizes():
        out = model(*(torch.empty(2, c, H, W, device="meta") for c in layout.input_channels))
        outs = out if isinstance(out, tuple) else (out,)
        assert [tuple(o.shape) for o in outs] == [(2, t.num_classes, H, W) for t in layout.tasks], (H, W)


def test_default_classes_inputs_and_outputs():
    expect = {
        "voc-fcn8s": (21, (3,), ("semantic",)), "pascalcontext-fcn16s": (60, (3,), ("semantic",)),
        "nyud-fcn32s-color": (40, (3,), ("semantic",)), "nyud-fcn32s-hha": (40, (3,), ("semantic",)),
        "nyud-fcn32s-color-d": (40, (4,), ("semantic",)), "nyud-fcn32s-color-hha": (40, (3, 3), ("semantic",)),
        "siftflow-fcn8s": ((33, 3), (3,), ("semantic", "geometric")),
    }
    for name, (classes, channels, labels) in expect.items():
        layout = model_layout(name)
        assert (layout.default_num_classes, layout.input_channels, layout.labels) == (classes, channels, labels)
    assert model_layout("nyud-fcn32s-color-d").modalities == ("color", "depth")
    assert model_layout("nyud-fcn32s-color-hha").modalities == ("color", "hha")


def test_every_upsampling_layer_is_a_fused_head(meta_models):
    for name, model in meta_models.items():
        deconvs = {layer for layer, blobs in RELEASE[name]["blobs"].items() if len(blobs) == 1 and len(blobs[0]) == 4}
        assert set(model.head_names) == deconvs
        assert all(isinstance(head, UpsampleCropAdd) for head in model.heads())


def test_num_classes_override_and_errors():
    with torch.device("meta"):
        assert build_model("pascalcontext-fcn8s", 7).num_classes == 7
        two = build_model("siftflow-fcn16s", (5, 2))
        assert (two.num_classes, two.task_classes) == ((5, 2), (5, 2))
        assert two.score_fr_geo.out_channels == 2 and two.upscore16_sem.out_channels == 5
        with pytest.raises(ValueError, match=r"2 positive ints \(semantic, geometric\)"):
            build_model("siftflow-fcn16s", 33)
        with pytest.raises(ValueError, match="a positive int"):
            build_model("voc-fcn8s", 0)


def test_input_errors_name_the_inputs(meta_models):
    hha = meta_models["nyud-fcn32s-color-hha"]
    x = torch.empty(1, 3, 8, 8, device="meta")
    with pytest.raises(TypeError, match=r"takes 2 input\(s\) \(color and hha\), got 1"):
        hha(x)
    with pytest.raises(ValueError, match=r"differ in batch or size"):
        hha(x, torch.empty(1, 3, 8, 9, device="meta"))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\) color\+depth batch"):
        meta_models["nyud-fcn32s-color-d"](x)
    split = hha.split_input(torch.empty(2, 6, 5, 5, device="meta"))
    assert [tuple(t.shape) for t in split] == [(2, 3, 5, 5)] * 2
    with pytest.raises(ValueError, match=r"\(N, 6, H, W\) batch \(color \+ hha\)"):
        hha.split_input(x)


def _random_model(name, seed):
    torch.manual_seed(seed)
    model = build_model(name).eval()
    with torch.no_grad():
        for layer in model.layout.score_layers:  # FCN starts them at zero: give them values to check
            torch.nn.init.normal_(getattr(model, layer).weight, std=0.01)
            torch.nn.init.normal_(getattr(model, layer).bias)
    return model


def _capture(model, names):
    seen = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o)) for n in names]
    return seen, hooks


def _upsample(x, head, crop, size):
    full = F.conv_transpose2d(x, head.weight, stride=head.stride)
    return full[:, :, crop:crop + size[0], crop:crop + size[1]]


def test_late_fusion_sums_the_streams_before_one_upscore():
    """nyud-fcn32s-color-hha as its prototxt computes it: 0.5 score_frcolor + 0.5 score_frhha,
    upscore (k64 s32), crop at 19 to the colour input."""
    model = _random_model("nyud-fcn32s-color-hha", 0)
    color, hha = torch.randn(1, 3, 13, 9), torch.randn(1, 3, 13, 9)
    seen, hooks = _capture(model, ["score_frcolor", "score_frhha"])
    with torch.no_grad():
        out = model(color, hha)
    fused = 0.5 * seen["score_frcolor"] + 0.5 * seen["score_frhha"]
    expected = _upsample(fused, model.upscore, RELEASE["nyud-fcn32s-color-hha"]["crops"]["score"], (13, 9))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert not torch.equal(seen["score_frcolor"], seen["score_frhha"])


def test_two_heads_share_one_trunk():
    """siftflow-fcn8s: both head chains read the same pools and fc7; each follows its prototxt crops."""
    model = _random_model("siftflow-fcn8s", 1)
    x = torch.randn(1, 3, 11, 14)
    names = ["pool3", "pool4", "score_fr_sem", "score_fr_geo"]
    seen, hooks = _capture(model, names)
    with torch.no_grad():
        sem, geo = model(x)
    crops = RELEASE["siftflow-fcn8s"]["crops"]
    for out, task in ((sem, "sem"), (geo, "geo")):
        with torch.no_grad():
            s4 = getattr(model, f"score_pool4_{task}")(seen["pool4"])
            s3 = getattr(model, f"score_pool3_{task}")(seen["pool3"])
            up2 = F.conv_transpose2d(seen[f"score_fr_{task}"], getattr(model, f"upscore2_{task}").weight, stride=2)
            c = crops[f"score_pool4_{task}c"]
            fuse4 = up2 + s4[:, :, c:c + up2.shape[2], c:c + up2.shape[3]]
            up4 = F.conv_transpose2d(fuse4, getattr(model, f"upscore_pool4_{task}").weight, stride=2)
            c = crops[f"score_pool3_{task}c"]
            fuse3 = up4 + s3[:, :, c:c + up4.shape[2], c:c + up4.shape[3]]
            expected = _upsample(fuse3, getattr(model, f"upscore8_{task}"), crops[f"score_{task}"], (11, 14))
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert (sem.shape[1], geo.shape[1]) == (33, 3)


def test_early_fusion_takes_colour_and_depth():
    model = _random_model("nyud-fcn32s-color-d", 2)
    x = torch.randn(2, 4, 7, 6)
    with torch.no_grad():
        out = model(x)
        changed = model(torch.cat([x[:, :3], x[:, 3:] + 1.0], dim=1))
    assert out.shape == (2, 40, 7, 6) and torch.isfinite(out).all()
    assert not torch.equal(out, changed)  # the depth channel feeds conv1_1_bgrd
    assert model.conv1_1_bgrd.weight.shape == (64, 4, 3, 3) and not hasattr(model, "conv1_1")


def test_vgg16_init_fills_every_trunk_and_widens_the_first_conv():
    from fcnfast.models.layout import BACKBONE_CONVS
    from fcnfast.models.weights import VGG16_FEATURE_INDICES, vgg16_init

    torch.manual_seed(3)
    with torch.device("meta"):
        plain = build_model("voc-fcn32s")
    sources = [f"features.{i}" for i in VGG16_FEATURE_INDICES] + ["classifier.0", "classifier.3"]
    vgg = {}
    for src, name in zip(sources, BACKBONE_CONVS):
        weight = getattr(plain, name).weight
        small = name.startswith("conv")  # fc6/fc7 as zeros: 0.5 GB of random numbers would only cost time
        vgg[f"{src}.weight"] = torch.randn(weight.shape) if small else torch.zeros(weight.shape[0], weight[0].numel())
        vgg[f"{src}.bias"] = torch.randn(weight.shape[0])
    for name in ("nyud-fcn32s-color-d", "nyud-fcn32s-color-hha"):
        with torch.device("meta"):
            model = build_model(name)
        vgg16_init(model.to_empty(device="cpu"), vgg)
        for stream in model.layout.streams:
            first = getattr(model, stream.layer("conv1_1")).weight
            torch.testing.assert_close(first[:, :3], vgg["features.0.weight"])
            if first.shape[1] == 4:
                torch.testing.assert_close(first[:, 3], vgg["features.0.weight"].mean(dim=1))
            torch.testing.assert_close(getattr(model, stream.layer("conv5_3")).bias, vgg["features.28.bias"])
            torch.testing.assert_close(getattr(model, stream.layer("fc7")).bias, vgg["classifier.3.bias"])


def test_meta_sizes_follow_the_caffe_formula_for_two_heads(meta_models):
    """docs/design.md §6 for the SIFT Flow FCN-16s heads: score map ceil((H+198)/32) - 6."""
    model = meta_models["siftflow-fcn16s"]
    seen, hooks = _capture(model, ["score_fr_sem", "upscore2_geo"])
    model(torch.empty(1, 3, 256, 256, device="meta"))
    for hook in hooks:
        hook.remove()
    S = math.ceil((256 + 198) / 32) - 6
    assert tuple(seen["score_fr_sem"].shape[2:]) == (S, S)
    assert tuple(seen["upscore2_geo"].shape[2:]) == (2 * S + 2,) * 2
