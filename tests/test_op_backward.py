"""Backward of fcnfast.upsample_crop_add: gradcheck, every backend vs the reference, registration."""

import pytest
import torch

import fcnfast
from fcnfast import backends
from fcnfast.reference import bilinear_weight, upsample_crop_add_reference

from conftest import backend_device_params
from op_cases import Case, make_inputs

GRAD_CASES = [
    Case(1, 2, 3, 3, 4, (4, 4), (2, 2), skip_margin=(5, 5), bias=True),
    Case(2, 3, 2, 3, 3, (4, 4), (2, 2), offset=(1, 3), size=(5, 4)),
    Case(1, 2, 2, 2, 3, (16, 16), (8, 8), offset=(9, 5), size=(7, 11), skip_margin=(1, 0)),
    Case(1, 2, 2, 2, 2, (32, 32), (16, 16), offset=(27, 27), size=(3, 4), bias=True),
    Case(2, 2, 3, 3, 2, (3, 3), (2, 2), offset=(1, 0), skip_margin=(2, 1)),
    Case(1, 3, 3, 3, 3, (4, 4), (2, 2), offset=(1, 1), size=(4, 5), bilinear=True, skip_margin=(0, 2)),
    Case(1, 3, 2, 2, 3, (5, 3), (3, 2), offset=(2, 1)),
]


def _grad_inputs(case, dtype, layout="contiguous"):
    x, weight, kw = make_inputs(case, dtype, layout=layout, seed=7)
    tensors = [x, weight] + [kw[k] for k in ("skip", "bias") if k in kw]
    for t in tensors:
        t.requires_grad_(True)
    return x, weight, kw


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
def test_gradcheck_float64(case, backend):
    if not backends.available_backends()[backend][0]:
        pytest.skip(f"{backend} unavailable")
    x, weight, kw = _grad_inputs(case, torch.float64)
    keys = [k for k in ("skip", "bias") if k in kw]

    # gradcheck perturbs inputs through .data (invisible to the depthwise cache), so the dense
    # path is checked with a perturbed weight and the depthwise path with a fixed diagonal one.
    def dense(x, weight, *extra):
        kwargs = dict(kw, **dict(zip(keys, extra)))
        return fcnfast.upsample_crop_add(x, weight, case.s, backend=backend, depthwise=False, **kwargs)

    assert torch.autograd.gradcheck(dense, (x, weight, *[kw[k] for k in keys]), eps=1e-6, atol=1e-8, fast_mode=True)
    if case.bilinear:
        def depthwise(x, *extra):
            kwargs = dict(kw, **dict(zip(keys, extra)))
            return fcnfast.upsample_crop_add(x, weight.detach(), case.s, backend=backend, depthwise=True, **kwargs)

        assert torch.autograd.gradcheck(depthwise, (x, *[kw[k] for k in keys]), eps=1e-6, atol=1e-8, fast_mode=True)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("backend, device", backend_device_params())
@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
def test_float32_gradients_match_reference(case, backend, device, layout):
    if backend == "triton" and device == "cpu" and not case.interpretable(max_kernel=16 if layout == "contiguous" else 4):
        pytest.skip("too slow for the Triton interpreter (runs on GPU; cpp covers it on CPU)")
    x, weight, kw = _grad_inputs(case, torch.float32, layout)
    if device == "cuda":
        x, weight = x.detach().cuda().requires_grad_(), weight.detach().cuda().requires_grad_()
        kw = {k: (v.detach().cuda().requires_grad_() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    leaves = {"x": x, "weight": weight, **{k: v for k, v in kw.items() if isinstance(v, torch.Tensor)}}
    grad_out = torch.randn(case.N, case.Cout, *case.out_size, generator=torch.Generator().manual_seed(1)).to(device)

    def grads(fn):
        for t in leaves.values():
            t.grad = None
        fn().backward(grad_out)
        return {name: t.grad.clone() for name, t in leaves.items()}

    ref = grads(lambda: upsample_crop_add_reference(x, weight, case.s, **kw))
    got = grads(lambda: fcnfast.upsample_crop_add(x, weight, case.s, backend=backend, **kw))
    for name in leaves:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-4, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_opcheck_including_autograd(backend):
    if not backends.available_backends()[backend][0]:
        pytest.skip(f"{backend} unavailable")
    case = GRAD_CASES[0]
    x, weight, kw = _grad_inputs(case, torch.float64)
    args = (x, weight, kw["bias"], kw["skip"], [2, 2], [0, 0], list(case.out_size), [5, 5], -1, backend)
    torch.library.opcheck(torch.ops.fcnfast.upsample_crop_add.default, args)
    grad_out = torch.randn(case.N, case.Cout, *case.out_size, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.fcnfast.upsample_crop_add_backward.default,
        (grad_out, x.detach(), weight.detach(), [2, 2], [0, 0], list(case.out_size), -1, backend, True, True),
    )


@pytest.mark.parametrize("backend, device", backend_device_params())
def test_grad_out_of_another_dtype_is_cast_alike_on_every_backend(backend, device):
    """The registered backward casts grad_out to x's dtype before any backend sees it (as autograd
    casts a gradient to its output's dtype): every backend gives the cast call's gradients."""
    case = GRAD_CASES[1]
    x, weight, _ = make_inputs(case, torch.float32, device)
    grad_out = torch.randn(case.N, case.Cout, *case.out_size, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(2)).to(device)
    args = (list(case.s), list(case.offset), list(case.out_size), 0, backend, True, True)
    got = torch.ops.fcnfast.upsample_crop_add_backward(grad_out, x, weight, *args)
    want = torch.ops.fcnfast.upsample_crop_add_backward(grad_out.float(), x, weight, *args)
    for name, g, w in zip(("grad_x", "grad_weight"), got, want):
        assert g.dtype == torch.float32, name
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6, msg=lambda m: f"{backend} {name}: {m}")


def test_frozen_weight_costs_no_weight_gradient(monkeypatch):
    seen = []
    for name in backends.BACKENDS:  # whichever the automatic choice picks
        be = backends.get(name)

        def backward(grad_out, x, weight, geom, depthwise, need_input, need_weight, _real=be.backward):
            seen.append((need_input, need_weight, depthwise))
            return _real(grad_out, x, weight, geom, depthwise, need_input, need_weight)

        monkeypatch.setattr(be, "backward", backward)
    head = fcnfast.UpsampleCropAdd(4, 4, 4, 2, skip_offset=1)  # frozen bilinear filters
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    head(x).sum().backward()
    assert seen == [(True, False, True)]  # grad_x through the depthwise path, no grad_weight
    assert head.weight.grad is None and x.grad is not None


def test_diagonal_but_learnable_weight_gets_dense_gradient():
    """The off-diagonal gradient of a diagonal weight is not zero: it must not be dropped."""
    weight = bilinear_weight(3, 3, 4).requires_grad_()
    x = torch.randn(1, 3, 4, 4)
    g = torch.randn(1, 3, 10, 10)
    fcnfast.upsample_crop_add(x, weight, 2).backward(g)
    ref_w = weight.detach().clone().requires_grad_()
    upsample_crop_add_reference(x, ref_w, 2).backward(g)
    torch.testing.assert_close(weight.grad, ref_w.grad)
    assert weight.grad[0, 1].abs().sum() > 0


def test_compiled_training_step_matches_eager():
    torch.manual_seed(0)

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.score = torch.nn.Conv2d(3, 4, 1)
            self.up = fcnfast.UpsampleCropAdd(4, 4, 4, 2, skip_offset=1, learnable=True)

        def forward(self, x, skip):
            return self.up(self.score(x), skip=skip, size=(6, 7))

    def step(model, opt, x, skip, target):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x, skip), target)
        loss.backward()
        opt.step()
        return loss

    eager = Head()
    compiled = Head()
    compiled.load_state_dict(eager.state_dict())
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.1)
    opt_c = torch.optim.SGD(compiled.parameters(), lr=0.1)
    # forward and backward compiled (AOT autograd traces the registered backward op)
    compiled_model = torch.compile(compiled, fullgraph=True)
    x, skip = torch.randn(2, 3, 4, 4), torch.randn(2, 4, 9, 9)
    target = torch.randint(0, 4, (2, 6, 7))
    for _ in range(2):
        le = step(eager, opt_e, x, skip, target)
        lc = step(compiled_model, opt_c, x, skip, target)
        torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled.up.weight, eager.up.weight, rtol=1e-5, atol=1e-6)
