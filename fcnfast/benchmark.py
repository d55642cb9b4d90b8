"""FCN latency benchmark: the library behind ``fcnfast bench`` and ``benchmarks/``.

For each (size, batch, dtype) it times, per provider, the *head* (the fused upsampling stages
fed with the real intermediate tensors of one backbone run) and the *end-to-end* forward,
separately: the fused head wins big on its own stages and a little end to end (DESIGN §6).

Providers:
    reference          eager model, heads on backend="reference" (conv_transpose2d + crop + add)
    compile            torch.compile of the plain reference graph (mode="max-autotune" on GPU); runs
                       in a child process with a time box, and is left out if it fails or times out
    fcnfast-<backend>  eager model, heads on a fused backend that runs on the device
                       (cpp on CPU; triton and cuda on GPU; never the Triton interpreter)
    fcnfast-optimize   fcnfast.optimize(model, dtype=..., cuda_graph=<on GPU>)

Timing: median and p10/p90 over warm runs; CUDA events (after a synchronize) on GPU,
``time.perf_counter`` on CPU. Each provider's output is compared with the float32 reference
output (TF32 off). Results: ``bench.json`` (device, versions, git commit, config, results)
and ``bench.png``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from . import backends as _backends
from .data import MEAN_BGR
from .models import build_model, load_weights
from .models.init import random_init_
from .nn import UpsampleCropAdd
from .optimize import optimize
from .reference import upsample_crop_add_reference

PROVIDER_REFERENCE = "reference"
PROVIDER_COMPILE = "compile"
PROVIDER_OPTIMIZE = "fcnfast-optimize"
FUSED_BACKENDS = ("triton", "cuda", "cpp")
ALL_PROVIDERS = (PROVIDER_REFERENCE, *(f"fcnfast-{b}" for b in FUSED_BACKENDS), PROVIDER_OPTIMIZE, PROVIDER_COMPILE)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
KINDS = ("head", "end_to_end")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Least time worth giving the compile child (compiling FCN-8s takes 40-70 s on the 2-core CPU).
MIN_COMPILE_S = {"cpu": 60.0, "cuda": 120.0}

# Defaults per device type. On the 2-core CPU one FCN-8s forward at 500x500 takes ~3.5 s idle and
# 15-20 s when other jobs compete for the cores, so end-to-end uses few runs there (and a soft
# time limit); the head is cheap.
DEVICE_DEFAULTS = {
    "cpu": dict(runs=3, warmup=1, head_runs=20, head_warmup=3, compile_timeout=120.0, time_limit=150.0),
    "cuda": dict(runs=50, warmup=10, head_runs=200, head_warmup=20, compile_timeout=900.0, time_limit=None),
}


# ---------------------------------------------------------------------------------------------
# Configuration and environment
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchConfig:
    sizes: List[Tuple[int, int]] = dataclasses.field(default_factory=lambda: [(500, 500)])
    batches: List[int] = dataclasses.field(default_factory=lambda: [1])
    dtypes: List[str] = dataclasses.field(default_factory=lambda: ["float32"])
    model: str = "fcn8s"
    num_classes: int = 21
    weights: Optional[str] = None
    providers: Optional[List[str]] = None  # None: every provider that runs on the device
    device: str = "auto"
    runs: Optional[int] = None  # end-to-end timed runs (None: device default)
    warmup: Optional[int] = None
    head_runs: Optional[int] = None
    head_warmup: Optional[int] = None
    compile_timeout: Optional[float] = None  # seconds for the whole compile child; 0 = no limit
    compile_mode: Optional[str] = None  # torch.compile mode (None: max-autotune on GPU, default on CPU)
    time_limit: Optional[float] = None  # soft limit of the whole run in seconds; 0 = none
    seed: int = 0
    threads: Optional[int] = None  # torch.set_num_threads for the run (None: torch's default)

    def resolved(self) -> "BenchConfig":
        """A copy with device and the per-device defaults filled in (and checked)."""
        cfg = copy.deepcopy(self)
        if cfg.device == "auto":
            cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
        if cfg.device not in ("cpu", "cuda") and not cfg.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {cfg.device!r}")
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("device cuda was requested but torch sees no CUDA device")
        defaults = DEVICE_DEFAULTS["cuda" if cfg.device.startswith("cuda") else "cpu"]
        for key, value in defaults.items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        for key in ("runs", "head_runs"):
            if getattr(cfg, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(cfg, key)}")
        for key in ("warmup", "head_warmup"):
            if getattr(cfg, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(cfg, key)}")
        if not cfg.sizes or any(h < 1 or w < 1 for h, w in cfg.sizes):
            raise ValueError(f"sizes must be positive, got {cfg.sizes}")
        if not cfg.batches or any(b < 1 for b in cfg.batches):
            raise ValueError(f"batches must be >= 1, got {cfg.batches}")
        for name in cfg.dtypes:
            if name not in DTYPES:
                raise ValueError(f"unknown dtype {name!r}; choose from {sorted(DTYPES)}")
        if cfg.threads is not None and cfg.threads < 1:
            raise ValueError(f"threads must be >= 1, got {cfg.threads}")
        if cfg.compile_mode is None:
            cfg.compile_mode = "max-autotune" if cfg.device.startswith("cuda") else "default"
        if cfg.compile_mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {cfg.compile_mode!r}; choose from {list(COMPILE_MODES)}")
        if cfg.providers is not None:
            unknown = [p for p in cfg.providers if p not in ALL_PROVIDERS]
            if unknown:
                raise ValueError(f"unknown provider(s) {unknown}; choose from {list(ALL_PROVIDERS)}")
        return cfg


def git_commit() -> str:
    """The commit of the fcnfast checkout (with '-dirty' for local changes), else 'unknown'.

    ``FCNFAST_GIT_COMMIT`` overrides it, for copies of a tree whose .git is absent or stale
    (the GPU machine gets a copy of the working tree)."""
    if os.environ.get("FCNFAST_GIT_COMMIT"):
        return os.environ["FCNFAST_GIT_COMMIT"]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return "unknown"
        sha = commit.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return sha + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def device_slug(device: str = "auto") -> str:
    """Folder name for results: ``cpu-amd-epyc``, ``nvidia-h100-80gb-hbm3``, ..."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = "cpu-" + re.sub(r"\(.*?\)|\b(processor|cpu|\d+-core)\b", "", cpu_name(), flags=re.I)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return re.sub(r"-+", "-", slug) or "unknown"


def environment(device: str) -> dict:
    info = {
        "device": device,
        "device_name": device_name(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    try:  # other processes competing for the cores make CPU timings noisy: record how busy it was
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    try:  # the installed version, without importing triton (slow, and not needed here)
        from importlib.metadata import version

        info["triton"] = version("triton")
    except Exception as exc:
        info["triton"] = f"not installed ({type(exc).__name__})"
    from . import __version__

    info["fcnfast"] = __version__
    if device.startswith("cuda"):
        info["cudnn"] = torch.backends.cudnn.version()
        info["allow_tf32_conv"] = torch.backends.cudnn.allow_tf32
        info["allow_tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    info["backends"] = {n: {"available": ok, "reason": why} for n, (ok, why) in _backends.available_backends().items()}
    return info


# ---------------------------------------------------------------------------------------------
# Models, inputs, head stages
# ---------------------------------------------------------------------------------------------


def build_bench_model(model: str = "fcn8s", num_classes: int = 21, weights: Optional[str] = None,
                      seed: int = 0, device: str = "cpu") -> nn.Module:
    """The benchmarked model in eval mode: ``weights`` loaded, else :func:`random_init_` (seeded)."""
    net = build_model(model, num_classes=num_classes, backend=PROVIDER_REFERENCE)
    if weights:
        load_weights(net, weights)
    else:
        random_init_(net, seed)
    return net.to(device).eval()


def make_input(batch: int, size: Tuple[int, int], seed: int = 0, device: str = "cpu") -> Tensor:
    """A preprocessed-looking batch: uniform 0..255 'pixels' minus the BGR mean, float32."""
    gen = torch.Generator().manual_seed(int(seed) + 1)
    x = torch.rand((batch, 3, *size), generator=gen) * 255.0
    x -= torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    return x.to(device)


class HeadInputs:
    """The tensors the head stages of one forward consumed: the first stage's x, each stage's skip and size."""

    def __init__(self, first_x: Tensor, skips: List[Optional[Tensor]], sizes: List[Optional[Tuple[int, int]]]):
        self.first_x, self.skips, self.sizes = first_x, skips, sizes

    def to(self, dtype: torch.dtype, channels_last: bool = False) -> "HeadInputs":
        def conv(t):
            if t is None:
                return None
            t = t.to(dtype)
            return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()

        return HeadInputs(conv(self.first_x), [conv(s) for s in self.skips], list(self.sizes))


def capture_head_inputs(model: nn.Module) -> Tuple[Callable[[], Optional[HeadInputs]], Callable[[], None]]:
    """Forward pre-hooks on the model's head stages; returns (get, remove)."""
    heads = model.heads()
    calls: Dict[int, tuple] = {}
    handles = []
    for i, head in enumerate(heads):
        def hook(module, args, kwargs, i=i):
            if i not in calls:
                x = args[0]
                skip = kwargs.get("skip", args[1] if len(args) > 1 else None)
                size = kwargs.get("size", args[2] if len(args) > 2 else None)
                calls[i] = (x, skip, None if size is None else tuple(int(v) for v in size))
        handles.append(head.register_forward_pre_hook(hook, with_kwargs=True))

    def get() -> Optional[HeadInputs]:
        if len(calls) != len(heads):
            return None
        return HeadInputs(calls[0][0], [calls[i][1] for i in range(len(heads))], [calls[i][2] for i in range(len(heads))])

    def remove() -> None:
        for h in handles:
            h.remove()

    return get, remove


def run_heads(heads: Sequence[nn.Module], inputs: HeadInputs) -> Tensor:
    """The head stages chained as in the model: each stage's output feeds the next."""
    out = inputs.first_x
    for head, skip, size in zip(heads, inputs.skips, inputs.sizes):
        out = head(out, skip=skip, size=size)
    return out


class PlainHead(nn.Module):
    """A head stage as the plain PyTorch graph (``fcnfast.reference``), visible to torch.compile."""

    def __init__(self, head: UpsampleCropAdd):
        super().__init__()
        self.head = head

    def forward(self, x: Tensor, skip: Optional[Tensor] = None, size=None) -> Tensor:
        h = self.head
        return upsample_crop_add_reference(x, h.weight, h.stride, offset=h.offset, size=size, skip=skip,
                                           skip_offset=h.skip_offset, bias=h.bias)


def plain_reference_model(model: nn.Module) -> nn.Module:
    """A shallow copy of ``model`` (parameters shared) whose heads are :class:`PlainHead` s."""
    plain = copy.copy(model)
    plain._modules = dict(model._modules)
    for name in model.head_names:
        plain._modules[name] = PlainHead(getattr(model, name))
    return plain


def head_stage_shapes(model: str = "fcn8s", size: Tuple[int, int] = (500, 500), batch: int = 1,
                      num_classes: int = 21) -> List[dict]:
    """Per head stage of ``model`` at input ``size``: its geometry and input shapes (exact, via meta tensors)."""
    with torch.device("meta"):
        net = build_model(model, num_classes=num_classes)
    get, remove = capture_head_inputs(net)
    shapes = []
    outs: Dict[str, tuple] = {}
    hooks = [getattr(net, n).register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, tuple(o.shape)))
             for n in net.head_names]
    try:
        net(torch.empty(batch, 3, *size, device="meta"))
    finally:
        remove()
        for h in hooks:
            h.remove()
    inputs = get()
    x_shape = tuple(inputs.first_x.shape)
    for i, name in enumerate(net.head_names):
        head = getattr(net, name)
        skip = inputs.skips[i]
        shapes.append(dict(
            name=name, x_shape=x_shape, skip_shape=None if skip is None else tuple(skip.shape),
            out_shape=outs[name], kernel=head.kernel_size, stride=head.stride, offset=head.offset,
            skip_offset=head.skip_offset, size=inputs.sizes[i],
        ))
        x_shape = outs[name]
    return shapes


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def time_fn(fn: Callable[[], object], runs: int, warmup: int, device: str) -> List[float]:
    """Seconds per call of ``fn`` over ``runs`` timed calls after ``warmup`` untimed ones."""
    return time_fn_with_output(fn, runs, warmup, device)[0]


def time_fn_with_output(fn: Callable[[], object], runs: int, warmup: int, device: str):
    """(seconds per timed call, the first call's output): ``warmup`` untimed calls, then ``runs`` timed ones.

    GPU: CUDA events around each call after a synchronize; CPU: ``time.perf_counter``.
    """
    first = None
    for i in range(warmup):
        out = fn()
        if i == 0:
            first = out
    _sync(device)
    times = []
    for _ in range(runs):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        if first is None:
            first = out
    return times, first


def summarize(times: Sequence[float], batch: int) -> dict:
    """median / p10 / p90 in ms per batch and per image."""
    import numpy as np

    arr = np.asarray(times, dtype=np.float64) * 1e3
    p10, med, p90 = (float(v) for v in np.percentile(arr, [10, 50, 90]))
    return {
        "runs": len(times), "median_ms": med, "p10_ms": p10, "p90_ms": p90,
        "median_ms_per_image": med / batch, "p10_ms_per_image": p10 / batch, "p90_ms_per_image": p90 / batch,
        "times_ms": [float(v) for v in arr],
    }


def max_abs_diff(out: Tensor, ref: Tensor) -> float:
    return float((out.detach().to(torch.float32) - ref.to(torch.float32)).abs().max()) if out.numel() else 0.0


# ---------------------------------------------------------------------------------------------
# Providers
# ---------------------------------------------------------------------------------------------


def providers_for(device: str, requested: Optional[List[str]] = None) -> List[Tuple[str, Optional[str]]]:
    """[(provider, why it is skipped or None)] in run order: reference first, compile last.

    By default every provider that runs on ``device``; with ``requested``, those (plus the
    reference, the baseline of every speedup), where one that cannot run here is listed with why.
    """
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    candidates: List[Tuple[str, Optional[str]]] = [(PROVIDER_REFERENCE, None)]
    for backend in FUSED_BACKENDS:
        be, reason = _backends._load(backend)
        skip = None
        if be is None:
            skip = reason
        elif backend == "triton" and _backends._triton_interpreted():
            skip = "the Triton interpreter (TRITON_INTERPRET=1) is never timed"
        elif device_type not in be.device_types:
            skip = f"backend {backend!r} does not run on {device_type}"
        candidates.append((f"fcnfast-{backend}", skip))
    candidates += [(PROVIDER_OPTIMIZE, None), (PROVIDER_COMPILE, None)]
    if requested is None:
        return [(name, skip) for name, skip in candidates if skip is None]
    wanted = set(requested) | {PROVIDER_REFERENCE}
    return [(name, skip) for name, skip in candidates if name in wanted]


def _dtype_supported(provider: str, dtype: torch.dtype, device: str) -> Optional[str]:
    """None if ``provider`` can run ``dtype`` on ``device``, else why not."""
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if provider.startswith("fcnfast-") and provider != PROVIDER_OPTIMIZE:
        backend = provider[len("fcnfast-"):]
        ok, reason = _backends._can_run(backend, device_type, dtype)
        return None if ok else reason
    return None


# ---------------------------------------------------------------------------------------------
# The compile provider runs in a child process (time-boxed; a stuck compile cannot hang the run)
# ---------------------------------------------------------------------------------------------


def _run_compile_child(spec: dict, timeout: Optional[float], workdir: str) -> Tuple[dict, str]:
    """Run the compile worker; returns (its result dict (possibly partial), status text)."""
    spec_path = os.path.join(workdir, "compile_spec.json")
    result_path = spec["result_path"]
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log_path = os.path.join(workdir, "compile_child.log")
    status = "ok"
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "fcnfast.benchmark", "--compile-worker", spec_path],
                                 stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = child.wait(timeout=timeout if timeout else None)
            if rc != 0:
                status = f"failed (exit code {rc})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
            try:
                os.killpg(child.pid, signal.SIGKILL)  # the child and the compile workers it started
            except (ProcessLookupError, PermissionError):
                child.kill()
            child.wait()
    result = {}
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    if status.startswith("failed"):
        with open(log_path) as f:
            tail = f.read()[-1500:]
        status += ": " + " | ".join(line.strip() for line in tail.strip().splitlines()[-6:])
    return result, status


def _compile_worker(spec_path: str) -> int:
    """Child process: torch.compile the plain reference (head, then end-to-end) and time it."""
    with open(spec_path) as f:
        spec = json.load(f)
    result: dict = {}

    def save():
        tmp = spec["result_path"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.replace(tmp, spec["result_path"])

    device, dtype = spec["device"], DTYPES[spec["dtype"]]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = build_bench_model(spec["model"], spec["num_classes"], spec["weights"], spec["seed"], device)
    model = model.to(dtype)
    data = torch.load(spec["inputs_path"], map_location=device, weights_only=True)
    x = data["x"].to(dtype)
    head_inputs = HeadInputs(data["first_x"], data["skips"], [tuple(s) if s else None for s in data["sizes"]]).to(dtype)
    mode = spec.get("mode")
    plain = plain_reference_model(model)
    heads = [getattr(plain, n) for n in model.head_names]
    outputs = {}
    with torch.inference_mode():
        if "head" in spec["kinds"]:
            head_fn = torch.compile(lambda: run_heads(heads, head_inputs), mode=mode)
            t0 = time.perf_counter()
            outputs["head"] = head_fn()  # compiles; an extra, untimed call
            _sync(device)
            compile_s = time.perf_counter() - t0
            times = time_fn(head_fn, spec["head_runs"], spec["head_warmup"], device)
            result["head"] = {"compile_s": compile_s, **summarize(times, spec["batch"])}
            torch.save({k: v.cpu() for k, v in outputs.items()}, spec["outputs_path"])
            save()
        if "end_to_end" in spec["kinds"]:
            compiled = torch.compile(plain, mode=mode)
            t0 = time.perf_counter()
            outputs["end_to_end"] = compiled(x)
            _sync(device)
            compile_s = time.perf_counter() - t0
            # the compiling call stands in for the first warm-up run
            times = time_fn(lambda: compiled(x), spec["runs"], max(spec["warmup"] - 1, 0), device)
            result["end_to_end"] = {"compile_s": compile_s, **summarize(times, spec["batch"])}
            torch.save({k: v.cpu() for k, v in outputs.items()}, spec["outputs_path"])
            save()
    return 0


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


def run_benchmark(cfg: BenchConfig, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run the benchmark described by ``cfg``; returns the bench.json dict."""
    from tqdm import tqdm

    cfg = cfg.resolved()
    device = cfg.device
    started = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    env = environment(device)
    provider_list = providers_for(device, cfg.providers)
    combos = [(s, b, d) for s in cfg.sizes for b in cfg.batches for d in cfg.dtypes]
    results: List[dict] = []
    notes: List[str] = []

    def elapsed() -> float:
        return time.perf_counter() - started

    base = build_bench_model(cfg.model, cfg.num_classes, cfg.weights, cfg.seed, device)
    model_name = type(base).__name__
    bar = tqdm(total=len(combos) * len(provider_list), desc="fcnfast bench", unit="provider",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    workdir = tempfile.mkdtemp(prefix="fcnfast-bench-")
    gt_cache: Dict[tuple, Tuple[Tensor, HeadInputs]] = {}
    forward_s: Dict[tuple, float] = {}  # the reference's end-to-end median (s), per (size, batch)
    models_by_dtype: Dict[str, nn.Module] = {"float32": base}
    try:
        for size, batch, dtype_name in combos:
            dtype = DTYPES[dtype_name]
            x = make_input(batch, size, cfg.seed, device)
            key = (size, batch)
            combo = dict(size=list(size), batch=batch, dtype=dtype_name)
            reference_median: Dict[str, float] = {}

            if dtype_name not in models_by_dtype:
                models_by_dtype[dtype_name] = copy.deepcopy(base).to(dtype)
            model = models_by_dtype[dtype_name]

            # Ground truth: the float32 reference output (TF32 off) and the head inputs it consumed.
            fresh_gt = key not in gt_cache
            if fresh_gt:
                bar.set_postfix_str(f"{size[0]}x{size[1]} b{batch}: float32 reference output")
                gt_cache[key] = _ground_truth(base, x, device)
            gt_out, gt_heads = gt_cache[key]

            for provider, skip_reason in provider_list:
                bar.set_postfix_str(f"{size[0]}x{size[1]} b{batch} {dtype_name}: {provider}")
                reason = skip_reason or _dtype_supported(provider, dtype, device)
                run_cfg = cfg
                if reason is None and provider not in (PROVIDER_REFERENCE, PROVIDER_COMPILE) and cfg.time_limit:
                    run_cfg, reason = _fit_time_limit(cfg, forward_s.get(key), cfg.time_limit - elapsed())
                if reason is not None:
                    for kind in KINDS:
                        results.append(dict(combo, kind=kind, provider=provider, status="skipped", reason=reason))
                    bar.update(1)
                    continue
                            # On the CPU the ground-truth forward was the reference's first warm-up run.
                prewarmed = gt_out if (provider == PROVIDER_REFERENCE and fresh_gt and dtype == torch.float32
                                       and not device.startswith("cuda")) else None
                try:
                    if provider == PROVIDER_COMPILE:
                        entries = _bench_compile(cfg, device, size, batch, dtype_name, x, gt_heads, workdir,
                                                 remaining=(cfg.time_limit - elapsed()) if cfg.time_limit else None)
                    else:
                        entries = _bench_in_process(run_cfg, provider, model, base, x, gt_heads, dtype, device, batch,
                                                    prewarmed=prewarmed)
                except Exception as exc:  # one broken provider must not lose the others' results
                    entries = {kind: dict(status="failed", reason=f"{type(exc).__name__}: {exc}") for kind in KINDS}
                if provider == PROVIDER_REFERENCE and entries["end_to_end"].get("status") == "ok":
                    forward_s[key] = entries["end_to_end"]["median_ms"] / 1e3
                if run_cfg is not cfg:
                    for kind in KINDS:
                        entries[kind]["note"] = (f"{run_cfg.runs} run(s) after {run_cfg.warmup} warm-up to fit "
                                                 f"--time-limit {cfg.time_limit:.0f} s")
                for kind in KINDS:
                    entry = dict(combo, kind=kind, provider=provider, **entries[kind])
                    out = entry.pop("output", None)
                    if out is not None:
                        entry["max_abs_diff"] = max_abs_diff(out, gt_out)
                        entry["max_abs_ref"] = float(gt_out.abs().max())
                    if entry.get("status") == "ok" and provider == PROVIDER_REFERENCE:
                        reference_median[kind] = entry["median_ms"]
                    if entry.get("status") == "ok" and kind in reference_median:
                        entry["speedup"] = reference_median[kind] / entry["median_ms"]
                    results.append(entry)
                bar.update(1)
    finally:
        bar.close()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    if any("--time-limit" in r.get("reason", "") for r in results):
        notes.append(f"some providers were skipped to stay within --time-limit {cfg.time_limit:.0f} s")
    cfg_dict = dataclasses.asdict(cfg)
    cfg_dict["sizes"] = [list(s) for s in cfg.sizes]
    cfg_dict["model_class"] = model_name
    cfg_dict["weights"] = cfg.weights or f"random (fcnfast.models.init.random_init_, seed {cfg.seed})"
    try:
        env["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return {
        "benchmark": "fcnfast bench",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": env,
        "config": cfg_dict,
        "notes": notes,
        "wall_s": elapsed(),
        "results": results,
    }


def _fit_time_limit(cfg: BenchConfig, forward_s: Optional[float], remaining: float):
    """(config with end-to-end runs/warm-up cut to fit ``remaining`` seconds, None) or (cfg, why skipped).

    A provider's cost is estimated as its end-to-end forwards at the reference's forward time,
    plus a few seconds for the head runs and (for optimize) the weight copy.
    """
    if forward_s is None:
        return cfg, None
    forwards = int((remaining - 5.0) // max(forward_s, 1e-6))
    if forwards >= cfg.runs + cfg.warmup:
        return cfg, None
    if forwards < 1:
        return cfg, (f"would end after --time-limit {cfg.time_limit:.0f} s ({max(remaining, 0):.0f} s left, one "
                     f"forward takes ~{forward_s:.0f} s)")
    warmup = min(cfg.warmup, 1) if forwards >= 2 else 0
    return dataclasses.replace(cfg, runs=forwards - warmup, warmup=warmup), None


def _ground_truth(base: nn.Module, x: Tensor, device: str) -> Tuple[Tensor, HeadInputs]:
    """float32 reference output with TF32 off, and the head inputs captured from the same forward."""
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    base.set_backend(PROVIDER_REFERENCE)
    get, remove = capture_head_inputs(base)
    try:
        with torch.inference_mode():
            out = base(x)
        heads = get()
    finally:
        remove()
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return out, heads


def _bench_in_process(cfg: BenchConfig, provider: str, model: nn.Module, base: nn.Module, x: Tensor,
                      gt_heads: HeadInputs, dtype: torch.dtype, device: str, batch: int,
                      prewarmed: Optional[Tensor] = None) -> Dict[str, dict]:
    entries: Dict[str, dict] = {}
    with torch.inference_mode():
        if provider == PROVIDER_OPTIMIZE:
            fast = optimize(base, dtype=dtype, cuda_graph=device.startswith("cuda"))
            heads = fast.model.heads()
            head_inputs = gt_heads.to(dtype, channels_last=fast.channels_last)
            e2e_input = x
            e2e_fn = lambda: fast(e2e_input)  # noqa: E731
            info = {"depthwise": [h.depthwise_choice() for h in heads], "cuda_graph": fast.cuda_graph}
        else:
            backend = PROVIDER_REFERENCE if provider == PROVIDER_REFERENCE else provider[len("fcnfast-"):]
            model.set_backend(backend)
            heads = model.heads()
            head_inputs = gt_heads.to(dtype)
            e2e_input = x.to(dtype)
            e2e_fn = lambda: model(e2e_input)  # noqa: E731
            info = {"backend": backend, "depthwise": [h.depthwise_choice() for h in heads]}
        head_fn = lambda: run_heads(heads, head_inputs)  # noqa: E731

        times, out = time_fn_with_output(head_fn, cfg.head_runs, cfg.head_warmup, device)
        entries["head"] = dict(status="ok", output=out, warmup=cfg.head_warmup, **info, **summarize(times, batch))

        warmup = cfg.warmup
        if prewarmed is not None and warmup > 0:
            warmup -= 1  # this exact forward already ran once: it made the ground truth
        times, out = time_fn_with_output(e2e_fn, cfg.runs, warmup, device)
        entries["end_to_end"] = dict(status="ok", output=out, warmup=cfg.warmup, **info, **summarize(times, batch))
        if provider == PROVIDER_OPTIMIZE:
            del fast
    return entries


def _bench_compile(cfg: BenchConfig, device: str, size, batch: int, dtype_name: str, x: Tensor,
                   gt_heads: HeadInputs, workdir: str, remaining: Optional[float]) -> Dict[str, dict]:
    timeout = cfg.compile_timeout or None
    if remaining is not None:
        needed = MIN_COMPILE_S["cuda" if device.startswith("cuda") else "cpu"]
        if remaining < needed:
            reason = (f"{max(remaining, 0):.0f} s left of --time-limit {cfg.time_limit:.0f} s, torch.compile "
                      f"needs about {needed:.0f} s here (raise --time-limit, or 0 for none)")
            return {k: dict(status="skipped", reason=reason) for k in KINDS}
        timeout = min(timeout, remaining) if timeout else remaining
    tag = f"{size[0]}x{size[1]}_b{batch}_{dtype_name}"
    inputs_path = os.path.join(workdir, f"inputs_{tag}.pt")
    torch.save({"x": x.cpu(), "first_x": gt_heads.first_x.cpu(),
                "skips": [None if s is None else s.cpu() for s in gt_heads.skips],
                "sizes": [None if s is None else list(s) for s in gt_heads.sizes]}, inputs_path)
    spec = dict(
        model=cfg.model, num_classes=cfg.num_classes, weights=cfg.weights, seed=cfg.seed, device=device,
        dtype=dtype_name, batch=batch, runs=cfg.runs, warmup=cfg.warmup, head_runs=cfg.head_runs,
        head_warmup=cfg.head_warmup, kinds=list(KINDS), inputs_path=inputs_path,
        outputs_path=os.path.join(workdir, f"outputs_{tag}.pt"), result_path=os.path.join(workdir, f"result_{tag}.json"),
        mode=None if cfg.compile_mode == "default" else cfg.compile_mode, threads=cfg.threads,
    )
    result, status = _run_compile_child(spec, timeout, workdir)
    outputs = {}
    if os.path.exists(spec["outputs_path"]):
        outputs = torch.load(spec["outputs_path"], map_location=device, weights_only=True)
    entries = {}
    for kind in KINDS:
        if kind in result:
            entries[kind] = dict(status="ok", output=outputs.get(kind), mode=spec["mode"] or "default",
                                 warmup=max(cfg.warmup, 1) if kind == "end_to_end" else cfg.head_warmup,
                                 **result[kind])
        else:
            label = "timed_out" if status.startswith("timed out") else "failed"
            entries[kind] = dict(status=label, reason=f"torch.compile {status}")
    return entries


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def _fmt_ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 0.1:
        return f"{v:.3f}"
    return f"{v * 1000:.1f} us"


def format_table(report: dict) -> str:
    """The human-readable table ``fcnfast bench`` prints."""
    env, cfg = report["environment"], report["config"]
    lines = [
        f"fcnfast bench: {cfg['model_class']} ({cfg['num_classes']} classes, weights: {cfg['weights']})",
        f"device {env['device_name']}; torch {env['torch']}, triton {env['triton']}, python {env['python']}, "
        f"commit {env['git_commit'][:12]}"
        + (f"; load average {env['load_average'][0]:.1f} on {env['cpu_count']} cores"
           if not env["device"].startswith("cuda") and "load_average" in env else ""),
        f"end-to-end: {cfg['runs']} timed run(s) after {cfg['warmup']} warm-up; head: {cfg['head_runs']} "
        f"run(s) after {cfg['head_warmup']} warm-up" + (
            "  (few end-to-end runs: one CPU forward takes seconds; pass --runs to change)"
            if not env["device"].startswith("cuda") else ""),
        "times are ms per image (median [p10, p90]); speedup = reference median / provider median; "
        "max|diff| vs the float32 reference output",
    ]
    groups: Dict[tuple, List[dict]] = {}
    for r in report["results"]:
        groups.setdefault((tuple(r["size"]), r["batch"], r["dtype"]), []).append(r)
    for (size, batch, dtype), rows in groups.items():
        lines.append("")
        lines.append(f"== {size[0]}x{size[1]}, batch {batch}, {dtype} ==")
        for kind, title in (("head", "head only (fused upsampling stages on captured inputs)"),
                            ("end_to_end", "end to end (backbone + head)")):
            lines.append(f"  {title}")
            lines.append(f"    {'provider':<18} {'median':>10} {'p10':>10} {'p90':>10} {'speedup':>8} {'max|diff|':>10}")
            for r in rows:
                if r["kind"] != kind:
                    continue
                if r.get("status") != "ok":
                    lines.append(f"    {r['provider']:<18} {r.get('status', '?')}: {r.get('reason', '')}")
                    continue
                speed = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
                diff = f"{r['max_abs_diff']:.2e}" if "max_abs_diff" in r else "-"
                extra = f"  (compile {r['compile_s']:.0f} s)" if "compile_s" in r else ""
                if r.get("note"):
                    extra += f"  ({r['note']})"
                lines.append(
                    f"    {r['provider']:<18} {_fmt_ms(r['median_ms_per_image']):>10} {_fmt_ms(r['p10_ms_per_image']):>10} "
                    f"{_fmt_ms(r['p90_ms_per_image']):>10} {speed:>8} {diff:>10}{extra}"
                )
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    lines.append(f"wall time {report['wall_s']:.0f} s")
    return "\n".join(lines)


def plot(report: dict, path: str) -> Optional[str]:
    """bench.png: head and end-to-end panels, ms per image per provider and configuration.

    Returns None on success, else why no plot was written (matplotlib missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib is not installed ({exc}); pip install matplotlib"

    ok = [r for r in report["results"] if r.get("status") == "ok"]
    configs = []
    for r in report["results"]:
        c = (tuple(r["size"]), r["batch"], r["dtype"])
        if c not in configs:
            configs.append(c)
    providers = []
    for r in ok:
        if r["provider"] not in providers:
            providers.append(r["provider"])
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 3 + 2.5 * len(configs) * 2), 4.8))
    width = 0.8 / max(len(providers), 1)
    for ax, kind, title in ((axes[0], "head", "head only"), (axes[1], "end_to_end", "end to end")):
        for j, provider in enumerate(providers):
            meds, lo, hi, xs, speed = [], [], [], [], []
            for i, c in enumerate(configs):
                row = next((r for r in ok if r["kind"] == kind and r["provider"] == provider
                            and (tuple(r["size"]), r["batch"], r["dtype"]) == c), None)
                if row is None:
                    continue
                xs.append(i + (j - (len(providers) - 1) / 2) * width)
                meds.append(row["median_ms_per_image"])
                lo.append(row["median_ms_per_image"] - row["p10_ms_per_image"])
                hi.append(row["p90_ms_per_image"] - row["median_ms_per_image"])
                speed.append(row.get("speedup"))
            if xs:
                bars = ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=provider)
                for bar_, sp in zip(bars, speed):
                    if sp is not None:
                        ax.annotate(f"{sp:.2f}x", (bar_.get_x() + bar_.get_width() / 2, bar_.get_height()),
                                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels([f"{s[0]}x{s[1]}\nbatch {b}\n{d}" for s, b, d in configs])
        ax.set_ylabel("ms per image (median, p10-p90)")
        ax.set_title(f"{report['config']['model_class']} {title}")
        ax.grid(axis="y", alpha=0.3)
        values = [r["median_ms_per_image"] for r in ok if r["kind"] == kind]
        if values and max(values) / max(min(values), 1e-9) > 30:
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), frameon=False)
    fig.suptitle(report["environment"]["device_name"], y=0.02, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.9))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def write_report(report: dict, out_dir: str) -> Tuple[str, Optional[str], Optional[str]]:
    """Write bench.json and bench.png under ``out_dir``; (json path, png path or None, why no png)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "bench.json"
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2, default=str)
    png_path = out / "bench.png"
    why = plot(report, str(png_path))
    return str(json_path), (None if why else str(png_path)), why


if __name__ == "__main__":  # the compile worker: python -m fcnfast.benchmark --compile-worker SPEC
    if len(sys.argv) == 3 and sys.argv[1] == "--compile-worker":
        sys.exit(_compile_worker(sys.argv[2]))
    print("usage: python -m fcnfast.benchmark --compile-worker SPEC.json (internal; use `fcnfast bench`)",
          file=sys.stderr)
    sys.exit(2)
