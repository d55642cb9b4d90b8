"""FCN models: exact Caffe geometry, initialisation, checkpoints and VGG16 transplant."""

import math
import random

import pytest
import torch

import fcnfast
from fcnfast.models import FCN8s, FCN8sAtOnce, FCN16s, FCN32s, MODELS, build_model, load_weights, vgg16_init
from fcnfast.models.weights import VGG16_FEATURE_INDICES
from fcnfast.reference import bilinear_kernel, bilinear_weight

MODEL_CLASSES = [FCN32s, FCN16s, FCN8s, FCN8sAtOnce]
LISTED_SIZES = [1, 2, 31, 32, 33, 224, 333, 500, 512, 1024]


def _sampled_sizes():
    rng = random.Random(2015)
    sizes = [(h, h) for h in LISTED_SIZES] + [(1, 1100), (1100, 1), (1100, 1100)]
    sizes += [(rng.randint(1, 1100), rng.randint(1, 1100)) for _ in range(40)]
    return sizes


@pytest.fixture(scope="module")
def meta_models():
    with torch.device("meta"):
        return {cls.__name__: cls() for cls in MODEL_CLASSES}


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_output_size_equals_input_size_for_all_sampled_sizes(meta_models, cls):
    model = meta_models[cls.__name__]
    for H, W in _sampled_sizes():
        out = model(torch.empty(2, 3, H, W, device="meta"))
        assert tuple(out.shape) == (2, 21, H, W), (H, W)


def _intermediate_shapes(model, H, W):
    shapes = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[2:])))
        for name in ("score_fr", "pool3", "pool4", *model.head_names)
    ]
    model(torch.empty(1, 3, H, W, device="meta"))
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize("H", [1, 2, 31, 32, 33, 224, 333, 500, 512, 1024, 1100])
def test_fcn8s_intermediate_sizes_follow_caffe_formulas(meta_models, H):
    """docs/design.md §6: with n = H + 198, S = ceil(n/32) - 6 and every crop fits."""
    shapes = _intermediate_shapes(meta_models["FCN8s"], H, H)
    n = H + 198
    S = math.ceil(n / 32) - 6
    assert shapes["score_fr"] == (S, S)
    assert shapes["upscore2"] == (2 * S + 2,) * 2
    assert shapes["pool4"] == (math.ceil(n / 16),) * 2
    assert shapes["upscore_pool4"] == (4 * S + 6,) * 2
    assert shapes["pool3"] == (math.ceil(n / 8),) * 2
    assert shapes["upscore8"] == (H, H)
    # Skip crops fit: 5 + upscore2 <= pool4, 9 + upscore_pool4 <= pool3, 31 + H <= 32S + 56.
    assert 5 + 2 * S + 2 <= math.ceil(n / 16)
    assert 9 + 4 * S + 6 <= math.ceil(n / 8)
    assert 31 + H <= 32 * S + 56


def test_caffe_sizes_at_500():
    shapes = _intermediate_shapes(FCN8s().to("meta"), 500, 500)
    assert shapes["score_fr"] == (16, 16)
    assert shapes["upscore2"] == (34, 34)
    assert shapes["pool4"] == (44, 44)
    assert shapes["upscore_pool4"] == (70, 70)
    assert shapes["pool3"] == (88, 88)


@pytest.mark.parametrize("cls,H,W", [(FCN32s, 1, 1), (FCN16s, 2, 3), (FCN8s, 33, 31), (FCN8sAtOnce, 1, 2)],
                         ids=["FCN32s-1x1", "FCN16s-2x3", "FCN8s-33x31", "FCN8sAtOnce-1x2"])
def test_real_forward_small_sizes(cls, H, W):
    """Real compute (the size sweep above runs on the meta device: the backbone costs ~2 s here)."""
    torch.manual_seed(0)
    model = cls(num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, H, W))
    assert out.shape == (2, 5, H, W)
    assert torch.isfinite(out).all()


def test_caffe_layer_geometry():
    model = FCN8s()
    assert model.conv1_1.padding == (100, 100)
    assert all(getattr(model, f"pool{i}").ceil_mode for i in range(1, 6))
    assert model.fc6.kernel_size == (7, 7) and model.fc6.padding == (0, 0)
    assert model.fc7.kernel_size == (1, 1)
    assert (model.upscore2.kernel_size, model.upscore2.stride, model.upscore2.skip_offset) == (4, (2, 2), (5, 5))
    assert (model.upscore_pool4.kernel_size, model.upscore_pool4.skip_offset) == (4, (9, 9))
    assert (model.upscore8.kernel_size, model.upscore8.stride, model.upscore8.offset) == (16, (8, 8), (31, 31))
    m16, m32 = FCN16s(), FCN32s()
    assert (m16.upscore16.kernel_size, m16.upscore16.stride, m16.upscore16.offset) == (32, (16, 16), (27, 27))
    assert (m32.upscore.kernel_size, m32.upscore.stride, m32.upscore.offset) == (64, (32, 32), (19, 19))
    assert (FCN8sAtOnce.pool4_scale, FCN8sAtOnce.pool3_scale) == (0.01, 0.0001)
    assert (FCN8s.pool4_scale, FCN8s.pool3_scale) == (1.0, 1.0)


def test_at_once_scales_pool_features():
    """FCN8sAtOnce == FCN8s whose score_pool4/score_pool3 weights are scaled by 0.01/0.0001."""
    torch.manual_seed(1)
    at_once = FCN8sAtOnce(num_classes=3).eval()
    for layer in (at_once.score_fr, at_once.score_pool4, at_once.score_pool3):
        torch.nn.init.normal_(layer.weight)
    plain = FCN8s(num_classes=3).eval()
    plain.load_state_dict(at_once.state_dict())
    with torch.no_grad():
        plain.score_pool4.weight.mul_(0.01)
        plain.score_pool3.weight.mul_(0.0001)
        x = torch.randn(1, 3, 9, 8)
        torch.testing.assert_close(at_once(x), plain(x), rtol=1e-4, atol=1e-5)


def test_bilinear_kernel_values_k4():
    expected_1d = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel(4), torch.outer(expected_1d, expected_1d))


@pytest.mark.parametrize("k", [4, 16, 32, 64])
def test_bilinear_kernel_formula_and_partition_of_unity(k):
    filt = bilinear_kernel(k, torch.float64)
    factor, center = (k + 1) // 2, (k + 1) // 2 - 0.5
    one_d = torch.tensor([1 - abs(i - center) / factor for i in range(k)], dtype=torch.float64)
    torch.testing.assert_close(filt, torch.outer(one_d, one_d))
    # With stride s = k/2 the two taps of every output sum to 1: constants upsample to constants.
    s = k // 2
    torch.testing.assert_close(one_d[:s] + one_d[s:], torch.ones(s, dtype=torch.float64))
    assert filt.max() < 1 and filt.min() > 0


def test_bilinear_kernel_odd_size_centre():
    filt = bilinear_kernel(3, torch.float64)
    assert filt[1, 1] == 1.0 and filt[0, 0] == 0.25


@pytest.mark.parametrize("k", [4, 16, 32, 64])
def test_bilinear_weight_is_on_channel_diagonal(k):
    weight = bilinear_weight(5, 5, k)
    for i in range(5):
        for j in range(5):
            if i == j:
                torch.testing.assert_close(weight[i, j], bilinear_kernel(k))
            else:
                assert not weight[i, j].any()
    assert fcnfast.is_channel_diagonal(weight)


def test_model_initialisation_follows_the_paper():
    model = FCN16s()
    for head in model.heads():
        assert fcnfast.is_channel_diagonal(head.weight)
        assert not head.weight.requires_grad
    torch.testing.assert_close(model.upscore16.weight[3, 3], bilinear_kernel(32))
    for layer in (model.score_fr, model.score_pool4):
        assert not layer.weight.any() and not layer.bias.any()
    assert model.conv1_1.weight.std() > 0  # backbone is not zero before vgg16_init


def test_state_dict_keys_are_caffe_layer_names():
    keys = set(FCN8s().state_dict())
    expected = {f"{n}.{p}" for n in (
        "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2",
        "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7", "score_fr", "score_pool4", "score_pool3",
    ) for p in ("weight", "bias")}
    expected |= {"upscore2.weight", "upscore_pool4.weight", "upscore8.weight"}
    assert keys == expected
    assert {"upscore.weight"} <= set(FCN32s().state_dict())
    assert {"upscore2.weight", "upscore16.weight"} <= set(FCN16s().state_dict())


@pytest.fixture(scope="module")
def trained_like_fcn8s():
    torch.manual_seed(3)
    model = FCN8s(num_classes=4)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def test_state_dict_round_trip_through_file(tmp_path, trained_like_fcn8s):
    path = tmp_path / "fcn8s.pth"
    torch.save(trained_like_fcn8s.state_dict(), path)
    fresh = FCN8s(num_classes=4)
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    for key, value in trained_like_fcn8s.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # the same file through fcnfast's loader, and as a pytorch-fcn training checkpoint
    load_weights(FCN8s(num_classes=4), path)
    ckpt = {"epoch": 3, "iteration": 100, "arch": "FCN8s", "best_mean_iu": 0.5,
            "optim_state_dict": {}, "model_state_dict": trained_like_fcn8s.state_dict()}
    from_ckpt = load_weights(FCN8s(num_classes=4), ckpt)
    assert torch.equal(from_ckpt.fc6.weight, trained_like_fcn8s.fc6.weight)
    other = FCN8s(num_classes=4)
    other.load_state_dict(ckpt, strict=True)  # the model's own load_state_dict unwraps it too
    assert torch.equal(other.upscore8.weight, trained_like_fcn8s.upscore8.weight)


def test_data_parallel_prefix_is_stripped(trained_like_fcn8s):
    prefixed = {f"module.{k}": v for k, v in trained_like_fcn8s.state_dict().items()}
    model = load_weights(FCN8s(num_classes=4), prefixed)
    assert torch.equal(model.score_fr.weight, trained_like_fcn8s.score_fr.weight)


def test_checkpoint_errors_name_the_problem(tmp_path, trained_like_fcn8s):
    sd = dict(trained_like_fcn8s.state_dict())
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_weights(FCN8s(num_classes=4), tmp_path / "nope.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt.pth"):
        load_weights(FCN8s(num_classes=4), corrupt)
    renamed = dict(sd)
    renamed["score_fr_typo.weight"] = renamed.pop("score_fr.weight")
    with pytest.raises(ValueError, match=r"missing keys: score_fr\.weight.*unexpected keys: score_fr_typo\.weight"):
        load_weights(FCN8s(num_classes=4), renamed)
    with pytest.raises(ValueError, match=r"wrong shapes.*score_fr\.weight \(4, 4096, 1, 1\) != \(21, 4096, 1, 1\)"):
        load_weights(FCN8s(), sd)  # 4-class checkpoint into a 21-class model
    with pytest.raises(ValueError, match="upscore16"):
        load_weights(FCN16s(num_classes=4), sd)  # an FCN-8s checkpoint is not an FCN-16s


def _fake_vgg16_state_dict():
    torch.manual_seed(4)
    sd = {}
    channels = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    for idx, (cin, cout) in zip(VGG16_FEATURE_INDICES, channels):
        sd[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3)
        sd[f"features.{idx}.bias"] = torch.randn(cout)
    for idx, (fin, fout) in {0: (25088, 4096), 3: (4096, 4096), 6: (4096, 1000)}.items():
        sd[f"classifier.{idx}.weight"] = torch.randn(fout, fin)
        sd[f"classifier.{idx}.bias"] = torch.randn(fout)
    return sd


def test_vgg16_transplant(tmp_path):
    vgg = _fake_vgg16_state_dict()
    path = tmp_path / "vgg16.pth"
    torch.save(vgg, path)
    model = vgg16_init(FCN8s(), path)
    assert model.fc6.weight.shape == (4096, 512, 7, 7)
    assert torch.equal(model.fc6.weight, vgg["classifier.0.weight"].reshape(4096, 512, 7, 7))
    assert torch.equal(model.fc7.weight[:, :, 0, 0], vgg["classifier.3.weight"])
    assert torch.equal(model.conv1_1.weight, vgg["features.0.weight"])
    assert torch.equal(model.conv5_3.bias, vgg["features.28.bias"])
    assert torch.equal(model.conv3_3.weight, vgg["features.14.weight"])
    assert not model.score_fr.weight.any()  # score layers untouched
    del vgg["classifier.3.bias"]
    with pytest.raises(ValueError, match=r"classifier\.3\.bias"):
        vgg16_init(FCN8s(), vgg)


def test_bad_model_inputs():
    model = FCN32s(num_classes=3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        FCN8s(num_classes=0)
    with pytest.raises(ValueError, match="unknown backend"):
        FCN8s(backend="tpu")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("fcn4s")
    assert {"voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce"} <= set(MODELS)
    assert isinstance(build_model("FCN8s_atonce"), FCN8sAtOnce)
