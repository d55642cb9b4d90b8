"""The launchers' own checks, which the registered op's validation keeps every public call from
reaching: the backend objects called directly with tensors that contradict their geometry, and
the pybind11 entry points of fcnfast._C and fcnfast._cuda called with inconsistent arguments.

Every check of the CUDA module's bindings runs before any CUDA call, so they are tested on a
machine without a GPU too (where the module imports but cannot launch)."""

import pytest
import torch

from fcnfast import backends
from fcnfast.backends import _abi, _extensions
from fcnfast.geometry import resolve_geometry

from conftest import HAS_CUDA, backend_device_params

COMPILED_PAIRS = [p for p in backend_device_params() if p.values[0] != "reference"]
OTHER_DTYPE = {"cpp": torch.float16, "cuda": torch.float64, "triton": torch.float64}  # one each lacks


def _call(device, Cout=3):
    """(tensors, geometry) of one valid call: x (2, 3, 4, 5), weight (3, Cout, 4, 4), stride 2,
    a 7x9 window at (1, 2), a skip read from (2, 1), a bias."""
    g = torch.Generator().manual_seed(0)
    t = dict(x=torch.randn(2, 3, 4, 5, generator=g), weight=torch.randn(3, Cout, 4, 4, generator=g),
             skip=torch.randn(2, Cout, 10, 11, generator=g), bias=torch.randn(Cout, generator=g))
    t = {k: v.to(device) for k, v in t.items()}
    geom = resolve_geometry(t["x"], t["weight"], t["bias"], t["skip"], 2, (1, 2), (7, 9), (2, 1))
    return t, geom


def _forward(backend, t, geom, depthwise=False):
    return backends.get(backend).forward(t["x"], t["weight"], t["bias"], t["skip"], geom, depthwise)


FORWARD_FAULTS = {
    # name: (change to the valid call's tensors, exception, message)
    "x_shape": (lambda t: dict(t, x=t["x"][:, :, :3]), ValueError, r"x shape \(2, 3, 3, 5\) does not match geometry"),
    "weight_shape": (lambda t: dict(t, weight=t["weight"][:, :2]), ValueError, r"weight shape \(3, 2, 4, 4\)"),
    "bias_shape": (lambda t: dict(t, bias=t["bias"][:2]), ValueError, r"bias shape \(2,\)"),
    "skip_too_small": (lambda t: dict(t, skip=t["skip"][:, :, :8]), ValueError,
                       r"skip shape \(2, 3, 8, 11\) does not cover the window"),
    "skip_channels": (lambda t: dict(t, skip=t["skip"][:, :2]), ValueError, r"skip shape \(2, 2, 10, 11\)"),
    "weight_dtype": (lambda t: dict(t, weight=t["weight"].double()), TypeError, r"weight is torch.float64 on"),
    "skip_dtype": (lambda t: dict(t, skip=t["skip"].half()), TypeError, r"skip is torch.float16 on"),
    "meta_tensors": (lambda t: {k: v.to("meta") for k, v in t.items()}, ValueError,
                     r"runs on .*tensors, x is on meta"),
}


@pytest.mark.parametrize("backend, device", COMPILED_PAIRS)
@pytest.mark.parametrize("fault", sorted(FORWARD_FAULTS))
def test_forward_launcher_refuses_tensors_that_contradict_the_geometry(fault, backend, device):
    change, exc, pattern = FORWARD_FAULTS[fault]
    t, geom = _call(device)
    _forward(backend, t, geom)  # the valid call runs
    with pytest.raises(exc, match=pattern):
        _forward(backend, change(t), geom)


@pytest.mark.parametrize("backend, device", COMPILED_PAIRS)
def test_launchers_refuse_a_dtype_they_lack_and_depthwise_without_square_channels(backend, device):
    t, geom = _call(device)
    other = {k: v.to(OTHER_DTYPE[backend]) for k, v in t.items()}
    with pytest.raises(TypeError, match=rf"backend '{backend}' supports .*, x has dtype {OTHER_DTYPE[backend]}"):
        _forward(backend, other, geom)
    t, geom = _call(device, Cout=2)
    with pytest.raises(ValueError, match="depthwise needs Cin == Cout"):
        _forward(backend, t, geom, depthwise=True)
    grad_out = torch.zeros(2, 2, 7, 9, device=device)
    with pytest.raises(ValueError, match="depthwise needs Cin == Cout"):
        backends.get(backend).backward(grad_out, t["x"], t["weight"], geom, True, True, False)


@pytest.mark.parametrize("backend, device", COMPILED_PAIRS)
def test_backward_launcher_refuses_a_grad_out_that_contradicts_the_geometry(backend, device):
    t, geom = _call(device)
    be = backends.get(backend)
    grad_out = torch.randn(2, 3, 7, 9, device=device)
    be.backward(grad_out, t["x"], t["weight"], geom, False, True, True)  # the valid call runs
    with pytest.raises(ValueError, match=r"grad_out shape \(2, 3, 7, 8\) does not match geometry"):
        be.backward(grad_out[..., :8], t["x"], t["weight"], geom, False, True, True)
    # Every compiled launcher refuses another dtype alike; the registered op casts before them.
    with pytest.raises(TypeError, match=r"grad_out is torch.float64 on .*, x is torch.float32"):
        be.backward(grad_out.double(), t["x"], t["weight"], geom, False, True, True)
    with pytest.raises(ValueError, match=r"x shape \(2, 3, 4, 4\) does not match geometry"):
        be.backward(grad_out, t["x"][..., :4], t["weight"], geom, False, True, True)


def test_cuda_backend_refuses_cpu_tensors_before_touching_its_module():
    t, geom = _call("cpu")
    with pytest.raises(ValueError, match=r"backend 'cuda' runs on cuda tensors, x is on cpu"):
        _forward("cuda", t, geom)
    with pytest.raises(ValueError, match=r"backend 'cuda' runs on cuda tensors, x is on cpu"):
        backends.get("cuda").backward(torch.zeros(2, 3, 7, 9), t["x"], t["weight"], geom, False, True, True)


# --- the pybind11 entry points ----------------------------------------------------------------

GEOM = [1, 2, 2, 3, 3, 4, 4, 8, 8, 2, 2, 0, 0, 0, 0]  # N Cin Cout Hin Win kh kw H W sh sw oy ox sy sx
X_STRIDES = [18, 9, 3, 1]
F32, F64, F16 = (_abi.DTYPE_CODES[d] for d in (torch.float32, torch.float64, torch.float16))


class EntryPoints:
    """The three kernel entry points of ``fcnfast.<name>``, called with GEOM-sized buffers.

    The CUDA module gets null pointers on a machine without a GPU: every call made here must
    fail in its argument checks, before any CUDA call."""

    def __init__(self, name):
        module, reason = _extensions.load(name)
        if module is None:
            pytest.skip(reason)
        self.module, self.name = module, name
        on_device = name == "_C" or HAS_CUDA
        device = "cuda" if name == "_cuda" and HAS_CUDA else "cpu"
        self.buffers = {k: torch.zeros(shape, device=device) for k, shape in
                        dict(x=(1, 2, 3, 3), w=(2, 2, 4, 4), out=(1, 2, 8, 8), gx=(1, 2, 3, 3), gw=(2, 2, 4, 4)).items()}
        self.ptr = {k: (v.data_ptr() if on_device else 0) for k, v in self.buffers.items()}
        self.last = 1 if name == "_C" else 0  # one thread, or the default stream

    def fwd(self, geom=GEOM, dtype=F32, x_strides=X_STRIDES, skip_strides=_abi.NO_STRIDES, depthwise=False):
        p = self.ptr
        self.module.upsample_crop_add_fwd(geom, dtype, p["x"], x_strides, p["w"], 0, 0, skip_strides, p["out"],
                                          depthwise, self.last)

    def bwd_input(self, geom=GEOM, dtype=F32, depthwise=False):
        p = self.ptr
        self.module.upsample_crop_add_bwd_input(geom, dtype, p["out"], p["w"], p["gx"], depthwise, self.last)

    def bwd_weight(self, geom=GEOM, dtype=F32, x_strides=X_STRIDES):
        p = self.ptr
        self.module.upsample_crop_add_bwd_weight(geom, dtype, p["x"], x_strides, p["out"], p["gw"], self.last)


MODULES = ["_C", "_cuda"]


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("entry", ["fwd", "bwd_input", "bwd_weight"])
def test_bindings_check_geometry_and_dtype_code(name, entry):
    call = getattr(EntryPoints(name), entry)
    with pytest.raises(ValueError, match="geometry must have 15 entries, got 14"):
        call(geom=GEOM[:14])
    for bad in ({9: 0}, {5: 0}, {11: -1}, {14: -2}):  # stride 0, kernel 0, negative offsets
        geom = [bad.get(i, v) for i, v in enumerate(GEOM)]
        with pytest.raises(ValueError, match="stride/kernel must be >= 1 and offsets >= 0"):
            call(geom=geom)
    with pytest.raises(ValueError, match="unknown dtype code 7"):
        call(dtype=7)
    lacked, message = (F16, "not supported by the CPU kernels") if name == "_C" else (F64, "supports float32, float16")
    with pytest.raises(ValueError, match=message):
        call(dtype=lacked)


@pytest.mark.parametrize("name", MODULES)
def test_bindings_check_stride_lists_and_depthwise_channels(name):
    entry = EntryPoints(name)
    with pytest.raises(ValueError, match="x_strides must have 4 entries, got 3"):
        entry.fwd(x_strides=X_STRIDES[:3])
    with pytest.raises(ValueError, match="skip_strides must have 4 entries, got 5"):
        entry.fwd(skip_strides=[0] * 5)
    with pytest.raises(ValueError, match="x_strides must have 4 entries, got 2"):
        entry.bwd_weight(x_strides=X_STRIDES[:2])
    unequal = GEOM[:2] + [1] + GEOM[3:]  # Cin 2, Cout 1 (the buffers are large enough)
    with pytest.raises(ValueError, match="depthwise needs Cin == Cout"):
        entry.fwd(geom=unequal, depthwise=True)
    with pytest.raises(ValueError, match="depthwise needs Cin == Cout"):
        entry.bwd_input(geom=unequal, depthwise=True)


def test_cpu_bindings_run_the_valid_call():
    """The arguments above are right but for the one fault each test puts in."""
    entry = EntryPoints("_C")
    entry.fwd()
    entry.bwd_input()
    entry.bwd_weight()


@pytest.mark.skipif(HAS_CUDA, reason="a GPU is present: the module can launch")
def test_cuda_bindings_reach_the_device_only_past_their_checks():
    """Without a GPU the valid call fails at its launch (RuntimeError): the ValueErrors above
    came from checks that ran before any CUDA call."""
    entry = EntryPoints("_cuda")
    with pytest.raises(RuntimeError, match="failed to launch"):
        entry.fwd()
