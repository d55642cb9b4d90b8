"""fcnfast.optimize: same outputs as the model it was built from, for fcnfast and pytorch-fcn style FCNs.

Every FCN forward costs a second or two on the CPU (conv1 runs at (H+198)x(W+198)), so the
models share one random backbone (built once, assigned without copies) and the reference
outputs are computed once per model.
"""

import copy
import warnings

import pytest
import torch
from torch import nn

import fcnfast
from fcnfast.models import FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from fcnfast.models.init import random_init_
from fcnfast.optimize import OptimizedFCN, detect_variant, optimize
from fcnfast.reference import bilinear_weight

HAS_CUDA = torch.cuda.is_available()
X_SHAPE = (1, 3, 20, 24)
NUM_CLASSES = 21
MODEL_CLASSES = [FCN32s, FCN16s, FCN8s, FCN8sAtOnce]


def assert_close(out, ref, rtol=2e-5, what=""):
    """Max abs difference within rtol of the output's scale (FCN scores reach the hundreds)."""
    assert out.shape == ref.shape, (out.shape, ref.shape)
    diff = (out.double() - ref.double()).abs()
    scale = ref.double().abs().max().item()
    idx = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
    assert diff.max().item() <= rtol * scale + 1e-5, (
        f"{what}: max |diff| {diff.max().item():.3e} at {idx} (out {out[idx].item():.6f}, ref "
        f"{ref[idx].item():.6f}) exceeds {rtol} x max |ref| {scale:.3e}"
    )


# ---------------------------------------------------------------------------------------------
# Shared random weights and models
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_state():
    """One random FCN-8s state dict (random normal backbone and non-zero score layers)."""
    model = random_init_(FCN8s(), seed=7)
    return {k: v.detach() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def x():
    return torch.randn(X_SHAPE, generator=torch.Generator().manual_seed(3)) * 60


def _fill(model: nn.Module, shared: dict, head_weight=None) -> nn.Module:
    """Assign shared tensors (no copies) to a meta-built model; heads: bilinear or ``head_weight(name, shape)``."""
    state = {}
    for key, value in model.state_dict().items():
        if key in shared and "upscore" not in key:
            state[key] = shared[key]
        elif key.endswith(".weight") and "upscore" in key:
            cin, cout, k, _ = value.shape
            state[key] = head_weight(key, value.shape) if head_weight else bilinear_weight(cin, cout, k)
        else:
            raise KeyError(key)
    model.load_state_dict(state, assign=True)
    return model.eval()


def _fcnfast_model(cls, shared):
    with torch.device("meta"):
        model = cls(backend="reference")
    return _fill(model, shared)


@pytest.fixture(scope="module")
def backbone_features(shared_state, x):
    """(pool3, pool4, fc7 output) of the shared backbone: identical for every model in this file."""
    model = _fcnfast_model(FCN8s, shared_state)
    with torch.inference_mode():
        taps, h = model._trunk(model.layout.streams[0], x)
    return taps[3], taps[4], h


def _reference_output(model, x, features, method="_trunk"):
    """``model(x)`` -- its own forward -- with the (shared, already computed) backbone step cached:
    fcnfast's ``_trunk(stream, x)`` or pytorch-fcn's ``_features(x)``."""
    pool3, pool4, h = features
    cached = (lambda stream, inp: ({3: pool3, 4: pool4}, h)) if method == "_trunk" else (lambda inp: features)
    setattr(model, method, cached)
    try:
        with torch.inference_mode():
            return model(x)
    finally:
        delattr(model, method)


@pytest.fixture(scope="module")
def fcnfast_cases(shared_state, x, backbone_features):
    """{class name: (model, reference output)}, computed lazily."""
    cache = {}

    def get(cls):
        if cls.__name__ not in cache:
            model = _fcnfast_model(cls, shared_state)
            cache[cls.__name__] = (model, _reference_output(model, x, backbone_features))
        return cache[cls.__name__]

    return get


@pytest.fixture(scope="module")
def fast8(fcnfast_cases):
    """optimize() of the FCN-8s case, shared by tests that only call it (a copy costs ~1.5 s here)."""
    return optimize(fcnfast_cases(FCN8s)[0])


# ---------------------------------------------------------------------------------------------
# A minimal pytorch-fcn style FCN-8s: ConvTranspose2d heads and pytorch-fcn's own forward (the truth)
# ---------------------------------------------------------------------------------------------


class PytorchFCN8s(nn.Module):
    """Laid out like pytorch-fcn's ``torchfcn.models.FCN8s``, with its forward (crops as it does them)."""

    def __init__(self, n_class=21):
        super().__init__()
        blocks = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))
        for b, (cin, cout, n) in enumerate(blocks, start=1):
            for i in range(1, n + 1):
                setattr(self, f"conv{b}_{i}", nn.Conv2d(cin if i == 1 else cout, cout, 3, padding=100 if (b, i) == (1, 1) else 1))
                setattr(self, f"relu{b}_{i}", nn.ReLU(inplace=True))
            setattr(self, f"pool{b}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout2d()
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout2d()
        self.score_fr = nn.Conv2d(4096, n_class, 1)
        self.score_pool3 = nn.Conv2d(256, n_class, 1)
        self.score_pool4 = nn.Conv2d(512, n_class, 1)
        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n_class, n_class, 16, stride=8, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)

    def _features(self, x):
        h = x
        taps = {}
        for b, n in enumerate((2, 2, 3, 3, 3), start=1):
            for i in range(1, n + 1):
                h = getattr(self, f"relu{b}_{i}")(getattr(self, f"conv{b}_{i}")(h))
            h = getattr(self, f"pool{b}")(h)
            taps[b] = h
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        return taps[3], taps[4], h

    def _scores(self, pool3, pool4):
        return self.score_pool4(pool4), self.score_pool3(pool3)

    def forward(self, x):
        pool3, pool4, h = self._features(x)
        h = self.score_fr(h)
        h = self.upscore2(h)
        upscore2 = h  # 1/16
        score_pool4, score_pool3 = self._scores(pool3, pool4)
        h = score_pool4[:, :, 5:5 + upscore2.size()[2], 5:5 + upscore2.size()[3]]
        h = upscore2 + h  # 1/16
        h = self.upscore_pool4(h)
        upscore_pool4 = h  # 1/8
        h = score_pool3[:, :, 9:9 + upscore_pool4.size()[2], 9:9 + upscore_pool4.size()[3]]
        h = upscore_pool4 + h  # 1/8
        h = self.upscore8(h)
        h = h[:, :, 31:31 + x.size()[2], 31:31 + x.size()[3]].contiguous()
        return h


class PytorchFCN8sAtOnce(PytorchFCN8s):
    """pytorch-fcn's FCN8sAtOnce: pool4 x 0.01 and pool3 x 0.0001 before their score layers."""

    def _scores(self, pool3, pool4):
        return self.score_pool4(pool4 * 0.01), self.score_pool3(pool3 * 0.0001)


def _dense_head(key, shape):
    gen = torch.Generator().manual_seed(hash(key) % 1000)
    return torch.randn(shape, generator=gen) * 0.05


def _pytorch_fcn(cls, shared, head_weight=None):
    with torch.device("meta"):
        model = cls()
    return _fill(model, shared, head_weight)


# ---------------------------------------------------------------------------------------------
# fcnfast models
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_optimize_matches_reference_backend(fcnfast_cases, x, cls):
    model, ref = fcnfast_cases(cls)
    before = {k: v.clone() for k, v in model.state_dict().items() if "score" in k}
    with torch.inference_mode():
        fast = optimize(model)  # built inside inference mode on purpose
        out = fast(x)
    assert isinstance(fast, OptimizedFCN) and isinstance(fast, nn.Module)
    assert type(fast.model) is cls and not fast.training and not fast.model.training
    assert all(not p.requires_grad for p in fast.parameters())
    assert all(h.depthwise is True for h in fast.model.heads()), "bilinear heads must be detected once"
    assert_close(out, ref, what=cls.__name__)
    assert out.dtype == x.dtype and out.shape == (1, NUM_CLASSES, *X_SHAPE[2:])
    for k, v in before.items():  # the given model is not modified
        assert torch.equal(model.state_dict()[k], v), k
    if cls is FCN8sAtOnce:
        assert fast.model.pool4_scale == 1.0 and fast.model.pool3_scale == 1.0
        assert FCN8sAtOnce.pool4_scale == 0.01 and model.pool4_scale == 0.01
        torch.testing.assert_close(fast.model.score_pool4.weight, model.score_pool4.weight * 0.01)
        torch.testing.assert_close(fast.model.score_pool3.weight, model.score_pool3.weight * 0.0001)
        torch.testing.assert_close(fast.model.score_pool3.bias, model.score_pool3.bias)
        assert "folded" in repr(fast)


def test_optimized_module_repr_and_eval_semantics(fcnfast_cases, fast8):
    model, _ = fcnfast_cases(FCN8s)
    text = repr(fast8)
    for part in ("OptimizedFCN(", "FCN8s(num_classes=21)", "channels_last", "upscore8=depthwise",
                 "backend auto", "cuda_graph: off", "inference only"):
        assert part in text, (part, text)
    with pytest.warns(UserWarning, match="inference module"):
        fast8.train()
    assert not fast8.training and not fast8.model.drop6.training
    assert fast8.model.conv2_1.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast8.model.fc6.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast8.model.upscore8.weight.is_contiguous()  # heads keep the ConvTranspose2d layout
    plain = optimize(_fcnfast_model(FCN16s, dict(model.state_dict())), backend="reference", channels_last=False)
    assert plain.model.conv2_1.weight.is_contiguous() and "backend reference -> reference" in repr(plain)


def test_at_once_float16_keeps_subnormal_scales_at_run_time(fcnfast_cases):
    model, _ = fcnfast_cases(FCN8sAtOnce)
    fast = optimize(model, dtype=torch.float16)
    assert fast.dtype == torch.float16
    # 1e-4 x weights of ~0.04 would be float16 subnormals: the scale stays a multiply instead
    assert fast.model.pool3_scale == 0.0001
    torch.testing.assert_close(fast.model.score_pool3.weight, model.score_pool3.weight.half())
    assert "kept at run time" in repr(fast)


def test_pool_scale_of_any_scored_pool_is_kept(fcnfast_cases, shared_state, x, backbone_features):
    """The layout-driven forward applies a pool's scale wherever that pool is scored (FCN-16s's
    pool4 too, not only at-once's); optimize() folds it, so the outputs still agree."""
    _, unscaled = fcnfast_cases(FCN16s)
    model = _fcnfast_model(FCN16s, shared_state)
    model.pool4_scale = 0.5
    ref = _reference_output(model, x, backbone_features)
    assert not torch.allclose(ref, unscaled)
    assert detect_variant(model) == (FCN16s, (0.5, 1.0))
    fast = optimize(model, channels_last=False)
    assert fast.model.pool4_scale == 1.0 and "score_pool4 x0.5" in repr(fast)
    with torch.inference_mode():
        assert_close(fast(x), ref, what="FCN16s with pool4_scale 0.5")


def test_dense_head_weights_are_not_depthwise(fcnfast_cases):
    model, _ = fcnfast_cases(FCN8s)
    trained = _fcnfast_model(FCN8s, {k: v for k, v in model.state_dict().items()})
    with torch.no_grad():
        trained.upscore8.weight.add_(0.01)  # learned: off-diagonal entries are non-zero
    fast = optimize(trained)
    assert [h.depthwise for h in fast.model.heads()] == [True, True, False]


# ---------------------------------------------------------------------------------------------
# pytorch-fcn style modules
# ---------------------------------------------------------------------------------------------


def test_pytorch_fcn8s_with_trained_dense_heads(shared_state, x, backbone_features):
    src = _pytorch_fcn(PytorchFCN8s, shared_state, head_weight=_dense_head)
    ref = _reference_output(src, x, backbone_features, method="_features")  # pytorch-fcn's forward
    with torch.inference_mode():
        fast = optimize(src)
        out = fast(x)
    assert type(fast.model) is FCN8s
    assert [h.depthwise for h in fast.model.heads()] == [False, False, False]
    torch.testing.assert_close(fast.model.upscore8.weight, src.upscore8.weight)
    assert_close(out, ref, what="pytorch-fcn FCN8s, dense heads")


def test_pytorch_fcn8s_at_once_folds_scales(shared_state, x, backbone_features):
    src = _pytorch_fcn(PytorchFCN8sAtOnce, shared_state)
    ref = _reference_output(src, x, backbone_features, method="_features")  # pytorch-fcn's forward
    with torch.inference_mode():
        fast = optimize(src)
        out = fast(x)
    assert type(fast.model) is FCN8sAtOnce
    assert fast.model.pool4_scale == 1.0 and fast.model.pool3_scale == 1.0
    torch.testing.assert_close(fast.model.score_pool4.weight, src.score_pool4.weight * 0.01)
    assert all(h.depthwise is True for h in fast.model.heads())
    assert_close(out, ref, what="pytorch-fcn FCN8sAtOnce")


def test_detect_variant_from_attributes():
    with torch.device("meta"):
        fcn8 = PytorchFCN8s()
        at_once = PytorchFCN8sAtOnce()
    assert detect_variant(fcn8) == (FCN8s, (1.0, 1.0))
    assert detect_variant(at_once) == (FCN8sAtOnce, (0.01, 0.0001))
    assert detect_variant(fcn8, at_once=True) == (FCN8sAtOnce, (0.01, 0.0001))
    assert detect_variant(at_once, at_once=False) == (FCN8s, (1.0, 1.0))
    del fcn8.upscore8, fcn8.upscore_pool4, fcn8.score_pool3
    fcn8.upscore16 = nn.ConvTranspose2d(21, 21, 32, stride=16, bias=False)
    assert detect_variant(fcn8)[0] is FCN16s
    with pytest.raises(ValueError, match="FCN-8s only"):
        detect_variant(fcn8, at_once=True)
    with torch.device("meta"):
        assert detect_variant(FCN32s())[0] is FCN32s


def test_foreign_layout_mismatch_is_a_clear_error():
    with torch.device("meta"):
        bad = PytorchFCN8s()
        bad.upscore8 = nn.ConvTranspose2d(21, 21, 16, stride=8, padding=4, bias=False)
        bad.pool3 = nn.MaxPool2d(2, stride=2)  # floor mode: different geometry
    with pytest.raises(ValueError, match=r"pool3 .*ceil_mode=True.*upscore8 .*padding=\(4, 4\)"):
        optimize(bad)
    with torch.device("meta"):
        ok = PytorchFCN8s()
    with pytest.raises(ValueError, match="meta device"):
        optimize(ok)
    with pytest.raises(ValueError, match="cannot tell which FCN"):
        optimize(nn.Sequential(nn.Conv2d(3, 21, 1)))


# ---------------------------------------------------------------------------------------------
# Backends, torch.compile, CUDA graphs on the CPU, bad input
# ---------------------------------------------------------------------------------------------


def test_triton_interpreter_backend(shared_state, x, backbone_features):
    ok, reason = fcnfast.backends.supports("triton", "cpu", torch.float32)
    if not ok:
        pytest.skip(f"triton cannot run on CPU tensors here: {reason}")
    # 2 classes: the interpreter's cost grows with the channels (21 classes take ~18 s here)
    with torch.device("meta"):
        model = FCN8s(num_classes=2, backend="reference")
    gen = torch.Generator().manual_seed(5)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("score"):
            state[key] = torch.randn(value.shape, generator=gen) * 0.05
        elif "upscore" in key:
            state[key] = bilinear_weight(2, 2, value.shape[-1])
        else:
            state[key] = shared_state[key]
    model.load_state_dict(state, assign=True)
    ref = _reference_output(model.eval(), x, backbone_features)
    with torch.inference_mode():
        fast = optimize(model, backend="triton")
        out = fast(x)
    assert "backend triton -> triton" in repr(fast)
    assert_close(out, ref, rtol=5e-5, what="triton interpreter")


def test_torch_compile_of_optimized_module(fcnfast_cases, fast8, x):
    _, ref = fcnfast_cases(FCN8s)
    torch._dynamo.reset()
    compiled = torch.compile(fast8, backend="aot_eager", fullgraph=True)
    with torch.inference_mode():
        out = compiled(x)
    assert_close(out, ref, what="torch.compile(optimize(model))")


def test_cuda_graph_on_cpu_warns_and_runs(fcnfast_cases, x):
    model, ref = fcnfast_cases(FCN16s)
    with pytest.warns(UserWarning, match="cuda_graph=True needs a model on a CUDA device"):
        fast = optimize(model, cuda_graph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.inference_mode():
            out = fast(x)
    assert_close(out, ref, what="cuda_graph on CPU")
    assert "captured" in repr(fast)


def test_bad_arguments_and_inputs(fcnfast_cases, fast8):
    model, _ = fcnfast_cases(FCN32s)
    with pytest.raises(TypeError, match="nn.Module"):
        optimize("fcn8s")
    with pytest.raises(ValueError, match="unknown backend"):
        optimize(model, backend="tpu")
    with pytest.raises(TypeError, match="dtype"):
        optimize(model, dtype=torch.int32)
    with pytest.raises(TypeError, match="cuda_graph"):
        optimize(model, cuda_graph="yes")
    if not HAS_CUDA:
        with pytest.raises(RuntimeError, match="backend 'cuda' was requested"):
            optimize(model, backend="cuda")
    fast = fast8
    with pytest.raises(TypeError, match="torch.Tensor"):
        fast([[1.0]])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*x\[None\]"):
        fast(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="3 input channels"):
        fast(torch.zeros(1, 1, 8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        fast(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="H, W >= 1"):
        fast(torch.zeros(1, 3, 0, 8))
    with pytest.raises(ValueError, match="is on meta but the model is on cpu"):
        fast(torch.zeros(1, 3, 8, 8, device="meta"))
    again = optimize(fast, channels_last=False)  # re-optimizing unwraps the OptimizedFCN
    assert type(again.model) is FCN8s and again.model is not fast.model


# ---------------------------------------------------------------------------------------------
# GPU (unverified without one; skipped cleanly)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuda_case(shared_state):
    model = _fcnfast_model(FCN8s, shared_state).cuda()
    return model


def _true_fp32(fn):
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return fn()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cuda_graph_matches_and_recaptures_per_shape(cuda_case):
    model = cuda_case
    fast = optimize(model, cuda_graph=True)
    assert torch.backends.cudnn.benchmark
    for shape in ((1, 3, 64, 80), (2, 3, 64, 80), (1, 3, 64, 80), (1, 3, 33, 47)):
        x = torch.randn(shape, device="cuda") * 60
        with torch.inference_mode():
            ref = _true_fp32(lambda: model(x))
            out = _true_fp32(lambda: fast(x))
            out2 = _true_fp32(lambda: fast(x))  # replay
        assert_close(out, ref, what=f"cuda graph {shape}")
        torch.testing.assert_close(out, out2)
    assert len(fast._graphs) == 3 and fast._graph_failed is None
    x = torch.randn(1, 3, 64, 80, device="cuda") * 60
    with torch.inference_mode():
        a = fast(x)
        b = fast(x * 2)
    assert not torch.equal(a, b), "outputs must be fresh tensors, not the graph's static buffer"


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype, rtol", [(torch.float16, 2e-2), (torch.bfloat16, 5e-2)])
def test_half_precision_on_gpu(cuda_case, dtype, rtol):
    model = cuda_case
    x = torch.randn(1, 3, 96, 128, device="cuda") * 60
    fast = optimize(model, dtype=dtype, cuda_graph=True)
    with torch.inference_mode():
        ref = _true_fp32(lambda: model(x))
        out = fast(x)
        low = copy.deepcopy(model).to(dtype)(x.to(dtype)).float()  # PyTorch's own error in this dtype
    assert out.dtype == torch.float32
    err = (out - ref).abs().max().item()
    torch_err = (low - ref).abs().max().item()
    assert err <= max(2 * torch_err, rtol * ref.abs().max().item()), (err, torch_err)
