"""When fcnfast.upsample_crop_add goes through its registered op, and when eager CPU inference
runs the op's implementation directly (same function, less dispatch)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fcnfast
from fcnfast import ops
from fcnfast.reference import bilinear_weight


@pytest.fixture
def op_calls(monkeypatch):
    """The calls that reach the registered op (they still run it)."""
    calls = []
    real = ops._OP

    def recording(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(ops, "_OP", recording)
    return calls


def _inputs(requires_grad=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=g, requires_grad=requires_grad)
    skip = torch.randn(2, 3, 12, 14, generator=g)
    return x, bilinear_weight(3, 3, 4), skip


def _call(x, weight, skip):
    return fcnfast.upsample_crop_add(x, weight, 2, offset=1, size=(9, 10), skip=skip, skip_offset=(1, 2),
                                     backend="reference")


def test_plain_inference_runs_the_implementation_directly_with_the_same_result(op_calls):
    x, weight, skip = _inputs()
    direct = _call(x, weight, skip)
    assert op_calls == []
    via_op = ops._OP(x, weight, None, skip, [2, 2], [1, 1], [9, 10], [1, 2], -1, "reference")
    assert torch.equal(direct, via_op)
    with torch.no_grad():  # no gradient to record even for a leaf that requires one
        _call(_inputs(requires_grad=True)[0], weight, skip)
    assert len(op_calls) == 1  # only the explicit call above


def test_a_call_that_records_a_gradient_goes_through_the_op(op_calls):
    x, weight, skip = _inputs(requires_grad=True)
    _call(x, weight, skip).sum().backward()
    assert len(op_calls) == 1 and x.grad is not None


def test_parameters_count_as_plain_tensors(op_calls):
    x, weight, skip = _inputs()
    with torch.no_grad():
        _call(x, torch.nn.Parameter(weight), skip)
    assert op_calls == []


class _SeenOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def test_dispatch_modes_see_the_op():
    x, weight, skip = _inputs()
    with _SeenOps() as mode:
        _call(x, weight, skip)
    assert any(name.startswith("fcnfast.upsample_crop_add") for name in mode.names), mode.names


def test_the_profiler_sees_the_op():
    x, weight, skip = _inputs()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _call(x, weight, skip)
    assert any(e.name == "fcnfast::upsample_crop_add" for e in prof.events())


def test_torch_function_subclasses_go_through_the_op(op_calls):
    class Traced(torch.Tensor):
        pass

    x, weight, skip = _inputs()
    out = _call(x.as_subclass(Traced), weight, skip)
    assert len(op_calls) == 1 and isinstance(out, torch.Tensor)
