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


def test_every_layout_has_exactly_one_class():
    assert MODEL_NAMES == tuple(LAYOUTS) == ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
    assert list(MODELS) == list(MODEL_NAMES)
    for name, cls in MODELS.items():
        assert cls.layout is LAYOUTS[name]
        assert cls.head_names == LAYOUTS[name].head_names
    assert len(set(MODELS.values())) == len(MODELS)
    assert fcnfast.build_model is build_model and DEFAULT_MODEL in MODEL_NAMES


@pytest.mark.parametrize("spelling, name", [
    ("fcn8s", "fcn8s"), ("FCN8s", "fcn8s"), ("FCN32s", "fcn32s"), ("fcn16s", "fcn16s"),
    ("fcn8s-atonce", "fcn8s-atonce"), ("fcn8s_atonce", "fcn8s-atonce"), ("FCN8s_AtOnce", "fcn8s-atonce"),
    ("FCN8sAtOnce", "fcn8s-atonce"),  # pytorch-fcn's class name, as its checkpoints' arch
])
def test_accepted_spellings(spelling, name):
    assert canonical_model_name(spelling) == name
    assert lookup_model_name(spelling) == name
    assert model_class(spelling) is MODELS[name]


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown model 'fcn4s'; choose from fcn32s, fcn16s, fcn8s, fcn8s-atonce"):
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
        assert [model_name_of(cls()) for cls in (FCN32s, FCN16s, FCN8s, FCN8sAtOnce)] == list(MODEL_NAMES)
    assert model_name_of(Tuned) == "fcn8s-atonce"
    assert model_name_of(torch.nn.Conv2d) is None and model_name_of(torch.nn.Identity()) is None


@pytest.mark.parametrize("name", MODEL_NAMES)
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
    assert at_once_pair(LAYOUTS["fcn8s"]) == at_once_pair(LAYOUTS["fcn8s-atonce"]) == (
        LAYOUTS["fcn8s"], LAYOUTS["fcn8s-atonce"])
    assert at_once_pair(LAYOUTS["fcn16s"]) is None and at_once_pair(LAYOUTS["fcn32s"]) is None
    assert LAYOUTS["fcn8s-atonce"].pool_scales == AT_ONCE_SCALES


def _model_option(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return next(a for a in sub.choices[command]._actions if a.dest == "model")


def test_cli_model_choices_come_from_the_registry():
    for command in ("train", "evaluate"):
        assert tuple(_model_option(command).choices) == MODEL_NAMES
    for command in ("bench", "segment"):  # free text, checked by the registry (any accepted spelling)
        option = _model_option(command)
        # None: the checkpoint's model, else the registry's default (issue 11 #13)
        assert option.default is None and all(name in option.help for name in (*MODEL_NAMES, DEFAULT_MODEL))


def test_every_model_has_a_paper_learning_rate():
    from fcnfast.models import MODEL_NAMES
    from fcnfast.training import PAPER_LR

    assert set(PAPER_LR) == set(MODEL_NAMES)
