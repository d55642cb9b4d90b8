"""GPU-only behaviour of the triton and cuda backends: half-precision gradients, CUDA graphs,
torch.compile, 64-bit indexing and a second device. Every test here is ``gpu``-marked and
skips, with the reason, on a machine without CUDA."""

import pytest
import torch

import fcnfast
from fcnfast.models import FCN8s
from fcnfast.reference import bilinear_weight, upsample_crop_add_reference

from conftest import HAS_CUDA, gpu_backends
from op_cases import Case, make_inputs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")]

HALF_GRAD_CASES = [
    Case(2, 5, 5, 6, 7, (4, 4), (2, 2), offset=(1, 1), size=(9, 11), skip_margin=(2, 3), bias=True),
    Case(1, 21, 21, 9, 8, (16, 16), (8, 8), offset=(31, 31), size=(40, 33), bilinear=True),
    Case(1, 3, 4, 4, 5, (5, 3), (3, 2), offset=(2, 1)),
]
# Relative error bounds (to the gradient's largest magnitude) against an fp64 reference.
HALF_TOL = {torch.float16: 5e-3, torch.bfloat16: 3e-2}


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double().cpu() - ref).abs().max() / max(ref.abs().max().item(), 1e-12)).item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("backend", gpu_backends())
@pytest.mark.parametrize("case", HALF_GRAD_CASES, ids=lambda c: c.id)
def test_half_precision_gradients(case, backend, dtype):
    x64, w64, kw64 = make_inputs(case, torch.float64, seed=3)
    leaves64 = [x64, w64] + [kw64[k] for k in ("skip", "bias") if k in kw64]
    for t in leaves64:
        t.requires_grad_(True)
    grad_out = torch.randn(case.N, case.Cout, *case.out_size, dtype=torch.float64)
    upsample_crop_add_reference(x64, w64, case.s, **kw64).backward(grad_out)

    def low(t):
        return t.detach().to(device="cuda", dtype=dtype).requires_grad_(True)

    x, w = low(x64), low(w64)
    kw = {k: (low(v) if isinstance(v, torch.Tensor) else v) for k, v in kw64.items()}
    for depthwise in ([None, True] if case.bilinear else [None]):
        for t in [x, w, *[v for v in kw.values() if isinstance(v, torch.Tensor)]]:
            t.grad = None
        out = fcnfast.upsample_crop_add(x, w, case.s, backend=backend, depthwise=depthwise, **kw)
        assert out.dtype == dtype
        out.backward(grad_out.to(device="cuda", dtype=dtype))
        pairs = [("x", x, x64), ("weight", w, w64)] + [(k, kw[k], kw64[k]) for k in ("skip", "bias") if k in kw]
        for name, got, ref in pairs:
            assert got.grad is not None and got.grad.dtype == dtype, name
            err = _rel_err(got.grad, ref.grad)
            assert err <= HALF_TOL[dtype], f"{backend} {dtype} depthwise={depthwise} grad {name}: rel err {err:.3g}"


@pytest.mark.parametrize("backend", gpu_backends())
def test_cuda_graph_capture_and_replay(backend):
    case = Case(2, 21, 21, 17, 19, (4, 4), (2, 2), skip_margin=(5, 5), bias=True)
    x, w, kw = make_inputs(case, torch.float32, "cuda")
    dense_w = w + 0.01  # not channel-diagonal: the dense kernel
    diag_w = bilinear_weight(21, 21, 4).cuda()
    static_x = x.clone()

    def run():
        return (fcnfast.upsample_crop_add(static_x, dense_w, case.s, backend=backend, **kw),
                fcnfast.upsample_crop_add(static_x, diag_w, case.s,
                                          depthwise=True, backend=backend, **kw))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run()  # compiles / loads kernels outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = run()
    for trial in range(3):
        static_x.copy_(torch.randn_like(static_x))
        graph.replay()
        torch.cuda.synchronize()
        expected = run()
        for got, want in zip(outs, expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=lambda m: f"replay {trial}: {m}")


@pytest.mark.parametrize("backend", gpu_backends())
def test_torch_compile_fullgraph_op_on_cuda(backend):
    case = Case(2, 4, 3, 6, 5, (4, 4), (2, 2), offset=(1, 1), size=(9, 8), skip_margin=(2, 3), bias=True)
    x, w, kw = make_inputs(case, torch.float32, "cuda")

    def f(x, w, skip, bias):
        return torch.relu(fcnfast.upsample_crop_add(x, w, 2, offset=1, size=(9, 8), skip=skip, skip_offset=(2, 3),
                                                    bias=bias, backend=backend)) * 2

    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(x, w, kw["skip"], kw["bias"]), f(x, w, kw["skip"], kw["bias"]))


@pytest.mark.parametrize("backend", gpu_backends())
def test_torch_compile_fullgraph_fcn8s_on_cuda(backend):
    torch.manual_seed(0)
    model = FCN8s(num_classes=5, backend=backend).cuda().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, (2.0 / m.weight[0].numel()) ** 0.5)
    x = torch.randn(1, 3, 37, 45, device="cuda")
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True)(x)
    assert compiled.shape == (1, 5, 37, 45)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("depthwise", [False, True], ids=["dense", "depthwise"])
@pytest.mark.parametrize("backend", gpu_backends())
def test_flat_index_beyond_int32(backend, depthwise):
    """An output of > 2^31 elements: the last rows (flat index > 2^31) must be right too."""
    free, _ = torch.cuda.mem_get_info()
    H, W = 2**15 + 6, 2**16  # 1 x 1 x H x W float16 = 2^31 + 393216 elements, 4.3 GB
    if free < 3 * 2 * H * W:
        pytest.skip(f"needs ~{3 * 2 * H * W / 1e9:.0f} GB of free GPU memory, {free / 1e9:.0f} GB free")
    x = torch.randn(1, 1, H // 2 + 1, W // 2, device="cuda", dtype=torch.float16)
    w = torch.randn(1, 1, 4, 4, device="cuda", dtype=torch.float16)
    skip = torch.randn(1, 1, H + 1, W + 1, device="cuda", dtype=torch.float16)
    out = fcnfast.upsample_crop_add(x, w, 2, offset=1, size=(H, W), skip=skip, skip_offset=1, depthwise=depthwise,
                                    backend=backend)
    assert out.numel() > 2**31
    rows = 3
    # The reference of the last rows from the last input rows only (cheap): those rows start at
    # absolute output row 2 * first, so the window's offset moves by as much.
    first = x.shape[2] - 6
    tail = upsample_crop_add_reference(x[:, :, first:].float(), w.float(), 2, offset=(1 + H - rows - 2 * first, 1),
                                       size=(rows, W), skip=skip.float(), skip_offset=(1 + H - rows, 1))
    torch.testing.assert_close(out[:, :, H - rows:].float(), tail, rtol=1e-2, atol=1e-2)
    head = upsample_crop_add_reference(x[:, :, :4].float(), w.float(), 2, offset=1, size=(rows, W),
                                       skip=skip.float(), skip_offset=1)
    torch.testing.assert_close(out[:, :, :rows].float(), head, rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
@pytest.mark.parametrize("backend", gpu_backends())
def test_second_device_index(backend):
    case = Case(2, 4, 4, 6, 5, (4, 4), (2, 2), skip_margin=(3, 3), bias=True)
    x, w, kw = make_inputs(case, torch.float32, "cuda:1")
    with torch.cuda.device(0):  # the current device is not the tensors'
        out = fcnfast.upsample_crop_add(x, w, case.s, backend=backend, **kw)
    assert out.device == torch.device("cuda:1")
    cpu_kw = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    torch.testing.assert_close(out.cpu(), upsample_crop_add_reference(x.cpu(), w.cpu(), case.s, **cpu_kw),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_optimize_cuda_graph_on_second_device():
    torch.manual_seed(0)
    model = FCN8s(num_classes=3).eval().to("cuda:1")
    fast = fcnfast.optimize(model, cuda_graph=True)
    x = torch.randn(1, 3, 40, 48, device="cuda:1")
    with torch.cuda.device(0), torch.inference_mode():
        out = fast(x)
        again = fast(x)  # replay
        ref = model(x)
    assert out.device == torch.device("cuda:1") and fast._graph_failed is None
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(again, out)
