"""Every bad input of docs/design.md §2 and §7 raises the documented exception, on every backend, before any launch."""

import pytest
import torch

import fcnfast
from fcnfast.backends import resolve_backend
from fcnfast.geometry import check_grad_out, resolve_geometry

from conftest import backend_device_params


def _good(device="cpu", dtype=torch.float32):
    x = torch.randn(2, 3, 4, 5, device=device, dtype=dtype)
    w = torch.randn(3, 4, 4, 4, device=device, dtype=dtype)  # full output (10, 12)
    skip = torch.randn(2, 4, 12, 14, device=device, dtype=dtype)
    bias = torch.randn(4, device=device, dtype=dtype)
    return x, w, skip, bias


BAD_CALLS = {
    # name: (call(x, w, skip, bias) -> kwargs for upsample_crop_add, exception, message regex)
    "x_3d": (lambda x, w, s, b: dict(x=x[0], weight=w, stride=2), ValueError, r"x must be 4-D.*\(3, 4, 5\)"),
    "zero_channels": (lambda x, w, s, b: dict(x=x[:, :0], weight=w[:0], stride=2), ValueError,
                      r"x must have Cin, Hin, Win >= 1"),
    "weight_2d": (lambda x, w, s, b: dict(x=x, weight=w[:, :, 0, 0], stride=2), ValueError, r"weight must be 4-D"),
    "channel_mismatch": (lambda x, w, s, b: dict(x=x[:, :2], weight=w, stride=2), ValueError,
                         r"channel mismatch.*Cin=2.*Cin=3"),
    "skip_too_small": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, skip=s, skip_offset=3), ValueError,
                       r"skip of shape \(2, 4, 12, 14\) is too small.*skip_offset \(3, 3\)"),
    "skip_channels": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, skip=s[:, :3]), ValueError, r"Cout=4"),
    "skip_batch": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, skip=s[:1]), ValueError, r"N=2"),
    "skip_3d": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, skip=s[0]), ValueError, r"skip must be 4-D"),
    "negative_offset": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, offset=(-1, 0)), ValueError,
                        r"offset must be non-negative"),
    "negative_skip_offset": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, skip=s, skip_offset=-2), ValueError,
                             r"skip_offset must be non-negative"),
    "window_beyond_output": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, offset=3, size=(8, 8)), ValueError,
                             r"window offset \(3, 3\) \+ size \(8, 8\) = \(11, 11\) exceeds.*\(10, 12\)"),
    "offset_past_output": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, offset=(10, 0)), ValueError,
                           r"leaves nothing"),
    "zero_size": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, size=(0, 3)), ValueError, r"size must be >= 1"),
    "stride_zero": (lambda x, w, s, b: dict(x=x, weight=w, stride=0), ValueError, r"stride must be >= 1"),
    "stride_float": (lambda x, w, s, b: dict(x=x, weight=w, stride=2.0), TypeError, r"stride must be an int"),
    "stride_triple": (lambda x, w, s, b: dict(x=x, weight=w, stride=(2, 2, 2)), TypeError, r"stride must be"),
    "bias_length": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, bias=b[:3]), ValueError, r"bias must have shape \(4,\)"),
    "integer_x": (lambda x, w, s, b: dict(x=x.long(), weight=w, stride=2), TypeError, r"x has dtype torch.int64"),
    "integer_weight": (lambda x, w, s, b: dict(x=x, weight=w.int(), stride=2), TypeError, r"weight has dtype torch.int32"),
    "dtype_mismatch": (lambda x, w, s, b: dict(x=x, weight=w.double(), stride=2), TypeError,
                       r"weight has dtype torch.float64 but x has dtype torch.float32"),
    "skip_dtype_mismatch": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, skip=s.half()), TypeError, r"skip has dtype"),
    "device_mismatch": (lambda x, w, s, b: dict(x=x, weight=w.to("meta"), stride=2), ValueError, r"weight is on meta"),
    "not_a_tensor": (lambda x, w, s, b: dict(x=x.tolist(), weight=w, stride=2), TypeError, r"x must be a torch.Tensor"),
    "depthwise_type": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, depthwise="yes"), TypeError,
                       r"depthwise must be None, True or False"),
    "depthwise_required_dense": (lambda x, w, s, b: dict(x=x, weight=w, stride=2, depthwise=True), ValueError,
                                 r"depthwise=True requires"),
}


@pytest.mark.parametrize("backend, device", backend_device_params())
@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_input_raises_documented_exception(name, backend, device):
    make, exc, pattern = BAD_CALLS[name]
    kwargs = make(*_good(device))
    x, w, stride = kwargs.pop("x"), kwargs.pop("weight"), kwargs.pop("stride")
    with pytest.raises(exc, match=pattern):
        fcnfast.upsample_crop_add(x, w, stride, backend=backend, **kwargs)


@pytest.mark.parametrize("name", ["channel_mismatch", "skip_too_small", "window_beyond_output", "bias_length"])
def test_registered_op_called_directly_still_validates(name):
    """torch.ops.fcnfast.upsample_crop_add checks shapes itself: raw pointers never see bad ones."""
    make, exc, pattern = BAD_CALLS[name]
    kw = make(*_good())
    x, w = kw["x"], kw["weight"]
    size = kw.get("size", (10, 12))  # the full transposed-conv output of _good()
    offset = kw.get("offset", 0)
    offset = [offset, offset] if isinstance(offset, int) else list(offset)
    so = kw.get("skip_offset", 0)
    with pytest.raises(exc, match=pattern):
        torch.ops.fcnfast.upsample_crop_add(
            x, w, kw.get("bias"), kw.get("skip"), [2, 2], offset, list(size), [so, so], -1, None
        )


@pytest.mark.parametrize("fault, exc, pattern", [
    (lambda g: g[..., :-1], ValueError, r"grad_out must have the output's shape \(2, 4, 10, 12\), got \(2, 4, 10, 11\)"),
    (lambda g: g.long(), TypeError, r"grad_out has dtype torch.int64"),
], ids=["shape", "integer"])
def test_registered_backward_validates_grad_out(fault, exc, pattern):
    x, w, _, _ = _good()
    grad_out = fault(torch.randn(2, 4, 10, 12))
    with pytest.raises(exc, match=pattern):
        torch.ops.fcnfast.upsample_crop_add_backward(grad_out, x, w, [2, 2], [0, 0], [10, 12], -1, None, True, True)


def test_grad_out_on_another_device_is_refused():
    # Through torch.ops a meta grad_out dispatches to the fake kernel, so the check is called itself.
    x, w, _, _ = _good()
    geom = resolve_geometry(x, w, None, None, 2, 0, None, 0)
    with pytest.raises(ValueError, match="grad_out is on meta but x is on cpu"):
        check_grad_out(geom, torch.empty(2, 4, 10, 12, device="meta"), x)


def test_unknown_backend():
    x, w, _, _ = _good()
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        fcnfast.upsample_crop_add(x, w, 2, backend="tpu")


def test_requested_backend_that_cannot_run_says_why():
    x, w, _, _ = _good("cpu")
    with pytest.raises(RuntimeError, match="backend 'cuda' was requested but cannot run this call: .+"):
        fcnfast.upsample_crop_add(x, w, 2, backend="cuda")
    if fcnfast.available_backends()["cpp"][0]:
        with pytest.raises(RuntimeError, match=r"'cpp' does not support torch.float16"):
            fcnfast.upsample_crop_add(x.half(), w.half(), 2, backend="cpp")


def test_env_var_overrides_auto(monkeypatch):
    monkeypatch.setenv("FCNFAST_BACKEND", "reference")
    assert resolve_backend(None, torch.device("cpu"), torch.float32) == "reference"
    monkeypatch.setenv("FCNFAST_BACKEND", "nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        resolve_backend(None, torch.device("cpu"), torch.float32)


def test_auto_choice_on_cpu():
    available = fcnfast.available_backends()
    expected = "cpp" if available["cpp"][0] else "reference"
    assert resolve_backend(None, torch.device("cpu"), torch.float32) == expected
    assert resolve_backend(None, torch.device("cpu"), torch.float16) == "reference"  # cpp is fp32/fp64


def test_available_backends_lists_every_backend_with_a_reason():
    available = fcnfast.available_backends()
    assert set(available) == {"reference", "triton", "cuda", "cpp"}
    for name, (ok, reason) in available.items():
        assert isinstance(ok, bool) and reason, name
    assert available["reference"][0]
