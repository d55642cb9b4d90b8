"""Full FCN models with fused heads equal the plain PyTorch graph (backend="reference")."""

import pytest
import torch

import fcnfast
from fcnfast.models import FCN8s



def _random_fcn8s(num_classes=21, seed=0):
    torch.manual_seed(seed)
    model = FCN8s(num_classes=num_classes).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2.0 / fan_in) ** 0.5)
                module.bias.normal_(0, 0.1)
    return model


def _capture_head_inputs(model, x):
    """Run the model once and record what each head stage received."""
    calls = {}
    hooks = [
        getattr(model, name).register_forward_pre_hook(
            lambda m, args, kwargs, name=name: calls.__setitem__(name, (args, kwargs)), with_kwargs=True
        )
        for name in model.head_names
    ]
    with torch.no_grad():
        out = model(x)
    for hook in hooks:
        hook.remove()
    return out, calls


@pytest.fixture(scope="module")
def fcn8s_at_500():
    """One full fused (cpp) forward of FCN-8s at 500x500 with the head inputs it recorded."""
    if not fcnfast.available_backends()["cpp"][0]:
        pytest.skip("cpp backend unavailable")
    model = _random_fcn8s().set_backend("cpp")
    out, calls = _capture_head_inputs(model, torch.randn(1, 3, 500, 500))
    return model, out, calls


def _head_chain(model, calls, backend):
    """score_fr's output through the head stages, with the skips the full forward received."""
    model.set_backend(backend)
    h = calls[model.head_names[0]][0][0]
    with torch.no_grad():
        for name in model.head_names:
            args, kwargs = calls[name]
            h = getattr(model, name)(h, *args[1:], **kwargs)
    return h


def test_fcn8s_cpp_equals_reference_at_500(fcn8s_at_500):
    """The fused model's output equals the reference graph run on the same backbone tensors
    (the backbone is the same code on both paths; only the heads differ)."""
    model, out, calls = fcn8s_at_500
    assert out.shape == (1, 21, 500, 500)
    assert all(head.depthwise_choice() == "depthwise" for head in model.heads())
    torch.testing.assert_close(out, _head_chain(model, calls, "reference"), rtol=1e-4, atol=1e-4)


def test_fcn8s_cpp_dense_heads_equal_reference_at_500(fcn8s_at_500):
    model, _, calls = fcn8s_at_500
    with torch.no_grad():
        for head in model.heads():  # trained-like heads: no depthwise path
            head.weight.add_(0.05 * torch.randn_like(head.weight))
    assert all(head.depthwise_choice() == "dense" for head in model.heads())
    fused = _head_chain(model, calls, "cpp")
    torch.testing.assert_close(fused, _head_chain(model, calls, "reference"), rtol=1e-4, atol=1e-4)


def test_fcn8s_triton_equals_reference_small():
    """Triton on the GPU where there is one, else through the interpreter on the CPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ok, reason = fcnfast.backends.supports("triton", device, torch.float32)
    if not ok:
        pytest.skip(reason)
    model = _random_fcn8s(num_classes=4, seed=1).to(device)
    x = torch.randn(1, 3, 24, 20, device=device)
    with torch.no_grad():
        expected = model.set_backend("reference")(x)
        got = model.set_backend("triton")(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
