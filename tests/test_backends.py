"""The backend registry and its objects: each says where it runs, in which dtypes and why not;
the automatic choice acts on their structured state, never on their messages."""

import warnings

import pytest
import torch

import fcnfast
from fcnfast import backends
from fcnfast.backends import Availability, State, _extensions, resolve_backend

CPU = torch.device("cpu")


def test_every_backend_is_one_object_that_describes_itself():
    assert backends.BACKENDS == ("reference", "triton", "cuda", "cpp")
    for name in backends.BACKENDS:
        be = backends.get(name)
        assert be.name == name and be.device_types and be.dtypes
        found = be.availability()
        assert isinstance(found.state, State) and found.detail
        assert be.unavailable_reason() == (None if found.state is State.READY else found.detail)
        assert fcnfast.available_backends()[name] == (found.state is State.READY, found.detail)
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        backends.get("tpu")


def test_why_not_names_the_device_and_the_dtype():
    reference = backends.get("reference")
    assert reference.why_not("cpu", torch.bfloat16) is None
    if backends.get("cpp").unavailable_reason() is None:
        assert "does not support torch.float16 on cpu (supports float32, float64)" in backends.get("cpp").why_not(
            "cpu", torch.float16)
        assert "does not run on cuda tensors" in backends.get("cpp").why_not("cuda", torch.float32)


def test_supports_keeps_its_semantics():
    ok, reason = backends.supports("reference", "cpu", torch.float32)
    assert ok and reason == "pure PyTorch"
    if not torch.cuda.is_available():
        assert backends.supports("reference", "cuda:1", torch.float32) == (False, "torch sees no CUDA device")
    with pytest.raises(ValueError, match="unknown backend"):
        backends.supports("tpu", "cpu", torch.float32)


def test_triton_under_the_interpreter_offers_no_bfloat16():
    triton = backends.get("triton")
    if triton.unavailable_reason() is not None or not backends.triton_interpreted():
        pytest.skip("the Triton interpreter is not in use")
    assert triton.device_types == ("cuda", "cpu")
    ok, reason = backends.supports("triton", "cpu", torch.bfloat16)
    assert not ok and "under the Triton interpreter (supports float32, float16)" in reason


def test_auto_choice_warns_once_about_a_broken_backend_and_never_about_an_absent_one(monkeypatch):
    cpp = backends.get("cpp")
    monkeypatch.setattr(backends, "_warned", set())
    monkeypatch.setattr(cpp, "_availability", Availability(State.ABSENT, "fcnfast._C is not built"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_backend(None, CPU, torch.float32) == "reference"
    # The words of the reason do not matter, only the state.
    monkeypatch.setattr(cpp, "_availability", Availability(State.BROKEN, "undefined symbol: boom"))
    with pytest.warns(RuntimeWarning, match="auto backend skips 'cpp': undefined symbol: boom"):
        assert resolve_backend(None, CPU, torch.float32) == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_backend(None, CPU, torch.float32) == "reference"  # once
    with pytest.raises(RuntimeError, match="backend 'cpp' was requested but cannot run this call: undefined symbol"):
        resolve_backend("cpp", CPU, torch.float32)


def test_compiled_module_imports_are_classified(monkeypatch):
    probe = _extensions.probe.__wrapped__  # uncached
    missing = probe("_no_such_module")
    assert missing.module is None and missing.state is State.ABSENT and "is not built" in missing.reason

    def broken(name):
        raise ImportError("undefined symbol: boom")

    monkeypatch.setattr(_extensions.importlib, "import_module", broken)
    found = probe("_C")
    assert found.module is None and found.state is State.BROKEN
    assert found.reason == "fcnfast._C is built but failed to import: undefined symbol: boom"
