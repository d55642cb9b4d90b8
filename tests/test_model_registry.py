"""The model registry and the layout it names: one source for names, classes, geometry and CLI choices."""

import pytest
import torch

import fcnfast
from fcnfast.cli import build_parser
from fcnfast.models import (
    DEFAULT_MODEL, MODEL_NAMES, MODELS, FCN8s, FCN8sAtOnce, FCN16s, FCN32s, build_model, canonical_model_name,
    lookup_model_name, model_class, model_name_of,
)
from fcnfast.models.layout import AT_ONCE_SCALES, LAYOUTS, at_once_pair, pool_channels


RELEASE_FOLDERS = (
    "voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce", "pascalcontext-fcn32s", "pascalcontext-fcn16s",
    "pascalcontext-fcn8s", "nyud-fcn32s-color", "nyud-fcn32s-hha", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha",
    "siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s",
)


def test_every_layout_has_exactly_one_class():
    assert MODEL_NAMES == tuple(LAYOUTS) == RELEASE_FOLDERS
    assert list(MODELS) == list(MODEL_NAMES)
    for name, cls in MODELS.items():
        assert cls.layout is LAYOUTS[name]
        assert cls.head_names == LAYOUTS[name].head_names
    assert len(set(MODELS.values())) == len(MODELS)
    assert fcnfast.build_model is build_model and DEFAULT_MODEL in MODEL_NAMES


@pytest.mark.parametrize("spelling, name", [
    ("fcn8s", "voc-fcn8s"), ("FCN8s", "voc-fcn8s"), ("FCN32s", "voc-fcn32s"), ("fcn16s", "voc-fcn16s"),
    ("fcn8s-atonce", "voc-fcn8s-atonce"), ("fcn8s_atonce", "voc-fcn8s-atonce"), ("FCN8s_AtOnce", "voc-fcn8s-atonce"),
    ("FCN8sAtOnce", "voc-fcn8s-atonce"),  # pytorch-fcn's class name, as its checkpoints' arch
    ("voc-fcn8s", "voc-fcn8s"), ("VOC_FCN16s", "voc-fcn16s"), ("SiftFlow-FCN8s", "siftflow-fcn8s"),
    ("nyud_fcn32s_color_hha", "nyud-fcn32s-color-hha"), ("PascalContextFCN32s", "pascalcontext-fcn32s"),
])
def test_accepted_spellings(spelling, name):
    assert canonical_model_name(spelling) == name
    assert lookup_model_name(spelling) == name
    assert model_class(spelling) is MODELS[name]


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown model 'fcn4s'; choose from voc-fcn32s, voc-fcn16s, voc-fcn8s, "
                                         r"voc-fcn8s-atonce, pascalcontext-fcn32s, .*siftflow-fcn8s \(case"):
        canonical_model_name("fcn4s")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("fcn8 s")
    with pytest.raises(TypeError, match="must be a str"):
        canonical_model_name(8)
    for arch in ("fcn4s", None, 8, ""):
        assert lookup_model_name(arch) is None


def test_model_name_of_takes_the_nearest_registered_class():
    class Tuned(FCN8sAtOnce):
        pass

    with torch.device("meta"):
        assert [model_name_of(cls()) for cls in MODELS.values()] == list(MODEL_NAMES)
        assert [model_name_of(cls()) for cls in (FCN32s, FCN16s, FCN8s, FCN8sAtOnce)] == list(MODEL_NAMES[:4])
    assert model_name_of(Tuned) == "voc-fcn8s-atonce"
    assert model_name_of(torch.nn.Conv2d) is None and model_name_of(torch.nn.Identity()) is None


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if LAYOUTS[n].plain])
def test_constructors_follow_the_layout(name):
    layout = LAYOUTS[name]
    with torch.device("meta"):
        model = build_model(name, num_classes=7)
    for stage in layout.heads:
        head = getattr(model, stage.name)
        assert (head.kernel_size, head.stride, head.offset, head.skip_offset) == (
            stage.kernel, (stage.stride,) * 2, (stage.offset,) * 2, (stage.skip_offset,) * 2)
    for stage in layout.skip_stages:
        score = getattr(model, stage.skip_score)
        assert (score.in_channels, score.out_channels) == (pool_channels(stage.skip_pool), 7)
    convs = {n for n, m in model.named_children() if isinstance(m, torch.nn.Conv2d)}
    assert convs == set(layout.conv_layers)
    assert (model.pool4_scale, model.pool3_scale) == layout.pool_scales


def test_at_once_pairs():
    assert at_once_pair(LAYOUTS["voc-fcn8s"]) == at_once_pair(LAYOUTS["voc-fcn8s-atonce"]) == (
        LAYOUTS["voc-fcn8s"], LAYOUTS["voc-fcn8s-atonce"])
    assert at_once_pair(LAYOUTS["voc-fcn16s"]) is None and at_once_pair(LAYOUTS["voc-fcn32s"]) is None
    # Same heads, other classes: PASCAL-Context's FCN-8s has no at-once twin.
    assert at_once_pair(LAYOUTS["pascalcontext-fcn8s"]) is None
    assert LAYOUTS["voc-fcn8s-atonce"].pool_scales == AT_ONCE_SCALES


def test_class_names_follow_the_release_names():
    from fcnfast.models.fcn import class_name

    assert [class_name(n) for n in MODEL_NAMES[:4]] == ["FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce"]
    assert [cls.__name__ for cls in MODELS.values()][4:] == [
        "PascalContextFCN32s", "PascalContextFCN16s", "PascalContextFCN8s", "NYUDFCN32sColor", "NYUDFCN32sHHA",
        "NYUDFCN32sColorD", "NYUDFCN32sColorHHA", "SiftFlowFCN32s", "SiftFlowFCN16s", "SiftFlowFCN8s"]
    import pickle

    import fcnfast.models.fcn as fcn_module

    assert pickle.loads(pickle.dumps(MODELS["siftflow-fcn8s"])) is fcn_module.SiftFlowFCN8s
    with pytest.raises(TypeError, match="through a subclass"):
        fcn_module.FCN()


def _model_option(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return next(a for a in sub.choices[command]._actions if a.dest == "model")


def test_cli_model_options_come_from_the_registry():
    for command in ("train", "evaluate", "convert-caffe"):  # any accepted spelling, canonicalised by the registry
        option = _model_option(command)
        assert option.type("FCN8s") == "voc-fcn8s" and all(name in option.help for name in MODEL_NAMES)
    for command in ("bench", "segment"):  # free text, checked by the registry (any accepted spelling)
        option = _model_option(command)
        # None: the checkpoint's model, else the registry's default (issue 11 #13)
        assert option.default is None and all(name in option.help for name in (*MODEL_NAMES, DEFAULT_MODEL))


def test_every_model_has_a_paper_learning_rate():
    from fcnfast.models import MODEL_NAMES
    from fcnfast.training import PAPER_LR

    assert set(PAPER_LR) == set(MODEL_NAMES)
