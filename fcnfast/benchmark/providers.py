"""The providers a benchmark compares, which of them run here, and what each one runs.

    reference          eager model, heads on backend="reference" (conv_transpose2d + crop + add)
    fcnfast-<backend>  eager model, heads on a fused backend that runs on the device
                       (cpp on CPU; triton and cuda on GPU; never the Triton interpreter)
    fcnfast-optimize   fcnfast.optimize(model, dtype=..., cuda_graph=<on GPU>)
    compile            torch.compile of the plain reference graph (``fcnfast bench`` runs it in a
                       time-boxed child process: see compile_worker.py)
    compile-freezing   the same with inductor's freezing (weights folded and prepacked as constants;
                       on the CPU, oneDNN convolutions with fused ReLU)
    onnxruntime        ONNX Runtime (CPU) on the model exported by fcnfast.export_onnx; float32,
                       end to end only (the export is of the whole network)

:func:`prepare` turns a provider into the two calls that are timed, the head stages on captured
inputs and the whole forward; ``fcnfast bench`` and ``benchmarks/bench_fcn.py`` both time those.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..backends import supports, triton_interpreted
from ..optimize import optimize
from .heads import HeadInputs, plain_reference_model, run_heads

PROVIDER_REFERENCE = "reference"
PROVIDER_COMPILE = "compile"
PROVIDER_COMPILE_FREEZING = "compile-freezing"
PROVIDER_OPTIMIZE = "fcnfast-optimize"
PROVIDER_ONNXRUNTIME = "onnxruntime"
FUSED_PREFIX = "fcnfast-"
FUSED_BACKENDS = ("triton", "cuda", "cpp")
#: The torch.compile providers (compiled in a time-boxed child process by ``fcnfast bench``).
COMPILE_PROVIDERS = (PROVIDER_COMPILE, PROVIDER_COMPILE_FREEZING)
ALL_PROVIDERS = (PROVIDER_REFERENCE, *(FUSED_PREFIX + b for b in FUSED_BACKENDS), PROVIDER_OPTIMIZE,
                 *COMPILE_PROVIDERS, PROVIDER_ONNXRUNTIME)
INTERPRETER_SKIP = "the Triton interpreter (TRITON_INTERPRET=1) is never timed"
HEAD_SKIP_ONNXRUNTIME = "the ONNX export is of the whole network; its head is not timed alone"


def backend_of(provider: str) -> Optional[str]:
    """The op backend an eager provider sets on the model's heads; None for optimize and compile."""
    if provider == PROVIDER_REFERENCE:
        return "reference"
    if provider.startswith(FUSED_PREFIX) and provider != PROVIDER_OPTIMIZE:
        return provider[len(FUSED_PREFIX):]
    return None


def _fused_skip_reason(backend: str, device: str) -> Optional[str]:
    """None when fused ``backend`` runs compiled on ``device``, else why it is left out.

    Asked for float32, which every fused backend computes: a dtype that a backend lacks is
    reported per row by :func:`dtype_skip_reason`, not here.
    """
    ok, reason = supports(backend, device, torch.float32)
    if not ok:
        return reason
    if backend == "triton" and triton_interpreted():
        return INTERPRETER_SKIP
    return None


def onnxruntime_skip_reason(device: str) -> Optional[str]:
    """None when the onnxruntime provider runs on ``device``, else why not."""
    if device.startswith("cuda"):
        return "the onnxruntime provider runs ONNX Runtime's CPU execution provider only"
    for module in ("onnxruntime", "onnx", "onnxscript"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install onnx onnxscript onnxruntime)"
    return None


def fused_backends(device: str) -> List[str]:
    """The fused backends timed on ``device``, in :data:`FUSED_BACKENDS` order."""
    return [b for b in FUSED_BACKENDS if _fused_skip_reason(b, device) is None]


def providers_for(device: str, requested: Optional[List[str]] = None) -> List[Tuple[str, Optional[str]]]:
    """[(provider, why it is skipped or None)] in run order: reference first, compile last.

    By default every provider that runs on ``device``; with ``requested``, those (plus the
    reference, the baseline of every speedup), where one that cannot run here is listed with why.
    """
    candidates: List[Tuple[str, Optional[str]]] = [(PROVIDER_REFERENCE, None)]
    candidates += [(FUSED_PREFIX + b, _fused_skip_reason(b, device)) for b in FUSED_BACKENDS]
    candidates += [(PROVIDER_OPTIMIZE, None), *((name, None) for name in COMPILE_PROVIDERS)]
    candidates.append((PROVIDER_ONNXRUNTIME, onnxruntime_skip_reason(device)))
    if requested is None:
        return [(name, skip) for name, skip in candidates if skip is None]
    wanted = set(requested) | {PROVIDER_REFERENCE}
    return [(name, skip) for name, skip in candidates if name in wanted]


def dtype_skip_reason(provider: str, dtype: torch.dtype, device: str) -> Optional[str]:
    """None if ``provider`` can run ``dtype`` on ``device``, else why not.

    The fused providers have their backends' dtypes and onnxruntime float32 (what is exported);
    reference, optimize and compile run every dtype.
    """
    if provider == PROVIDER_ONNXRUNTIME and dtype != torch.float32:
        return "the onnxruntime provider runs the float32 export"
    backend = backend_of(provider)
    if backend is None or backend == "reference":
        return None
    ok, reason = supports(backend, device, dtype)
    return None if ok else reason


@dataclasses.dataclass
class Calls:
    """What one provider runs, ready to time: ``head`` (the head stages on captured inputs; None
    when no head inputs were given or the provider has no head-only call), ``end_to_end`` (the
    whole forward) and facts for the report."""

    end_to_end: Callable[[], Tensor]
    head: Optional[Callable[[], Tensor]]
    info: dict
    #: whether peak_tensor_bytes sees its memory: not ONNX Runtime's, nor compiled CPU code's
    tensor_memory: bool = True


def prepare(provider: str, base: nn.Module, typed: nn.Module, x: Tensor, dtype: torch.dtype, device: str,
            head_inputs: Optional[HeadInputs] = None, compile_mode: Optional[str] = None,
            workdir: Optional[str] = None) -> Calls:
    """The calls ``provider`` makes, for a forward of float32 input ``x`` in ``dtype``.

    ``base`` is the float32 model (what optimize() starts from), ``typed`` the same model in
    ``dtype`` (``base`` itself for float32); the eager providers set ``typed``'s head backend.
    ``compile_mode`` is torch.compile's ``mode`` (None: its default). ``workdir``: where the
    onnxruntime provider writes its export (a temporary folder when None). Call it under
    ``torch.inference_mode()``; torch.compile compiles on the first call, not here.
    """
    head_fn = None
    if provider == PROVIDER_ONNXRUNTIME:
        return _prepare_onnxruntime(base, x, workdir)
    if provider == PROVIDER_OPTIMIZE:
        fast = optimize(base, dtype=dtype, cuda_graph=device.startswith("cuda"))
        heads = fast.model.heads()
        info = {"depthwise": [h.depthwise_choice() for h in heads], "cuda_graph": fast.cuda_graph}
        if head_inputs is not None:
            head_in = head_inputs.to(dtype, channels_last=fast.channels_last)
            head_fn = lambda: run_heads(heads, head_in)  # noqa: E731
        return Calls(lambda: fast(x), head_fn, info)
    typed_x = x.to(dtype)
    typed_heads = None if head_inputs is None else head_inputs.to(dtype)
    if provider in COMPILE_PROVIDERS:
        freezing = provider == PROVIDER_COMPILE_FREEZING
        plain = plain_reference_model(typed)
        if typed_heads is not None:
            plain_heads = [getattr(plain, n) for n in typed.head_names]
            head_fn = _inductor_config(torch.compile(lambda: run_heads(plain_heads, typed_heads), mode=compile_mode),
                                       freezing)
        compiled = _inductor_config(torch.compile(plain, mode=compile_mode), freezing)
        # Compiled code allocates its buffers in C++, out of the profiler's sight: not counted.
        return Calls(lambda: compiled(typed_x), head_fn, {"mode": compile_mode or "default", "freezing": freezing},
                     tensor_memory=device.startswith("cuda"))
    backend = backend_of(provider)
    if backend is None:
        raise ValueError(f"unknown provider {provider!r}; choose from {list(ALL_PROVIDERS)}")
    typed.set_backend(backend)
    heads = typed.heads()
    if typed_heads is not None:
        head_fn = lambda: run_heads(heads, typed_heads)  # noqa: E731
    info = {"backend": backend, "depthwise": [h.depthwise_choice() for h in heads]}
    return Calls(lambda: typed(typed_x), head_fn, info)


def _inductor_config(fn: Callable[[], Tensor], freezing: bool) -> Callable[[], Tensor]:
    """``fn`` called with inductor's ``freezing`` set as asked (compiling happens at a call)."""
    from torch._inductor import config

    def call(*args):
        with config.patch(freezing=freezing):
            return fn(*args)

    return call


def _prepare_onnxruntime(base: nn.Module, x: Tensor, workdir: Optional[str]) -> Calls:
    """Export ``base`` (float32) with fcnfast.export_onnx and open it in ONNX Runtime with
    torch's thread count and every graph optimisation."""
    import onnxruntime as ort

    from ..export import INPUT_NAME, export_onnx

    folder = workdir or tempfile.mkdtemp(prefix="fcnfast-onnx-")
    path = export_onnx(base, os.path.join(folder, f"{type(base).__name__}.onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: x.detach().cpu().float().numpy()}
    info = {"onnxruntime": ort.__version__, "threads": options.intra_op_num_threads, "head": HEAD_SKIP_ONNXRUNTIME}
    return Calls(lambda: torch.from_numpy(session.run(None, feed)[0]), None, info, tensor_memory=False)
