"""The environment probe: versions, device, git commit, load, built extensions and backends.

One probe for everything that reports where it ran: ``fcnfast info`` prints it and ``fcnfast
bench`` stores it in ``bench.json`` (the benchmarks' pytest-benchmark JSON keeps a part of it).
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import List, Optional

import torch

from ._version import __version__
from .backends import _extensions  # the loader that knows why a compiled module did not load
from .backends import available_backends, resolve_backend


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: str) -> str:
    """The GPU's name for ``cuda[:N]``; for ``cpu`` the CPU's name and torch's thread count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


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


def load_average() -> Optional[List[float]]:
    """The 1, 5 and 15 minute load averages, or None where the OS has none.

    Other processes competing for the cores make CPU timings noisy: reports record how busy it was.
    """
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def triton_version() -> str:
    """The installed Triton's version, read without importing it (slow, and not needed to know)."""
    from importlib.metadata import version

    try:
        return version("triton")
    except Exception as exc:
        return f"not installed ({type(exc).__name__})"


def extensions() -> dict:
    """``{module: build info dict, or why it did not load}`` for fcnfast's compiled modules."""
    out = {}
    for name in ("_C", "_cuda"):
        module, reason = _extensions.load(name)
        out[f"fcnfast.{name}"] = module.build_info() if module is not None else reason
    return out


def probe(device: str) -> dict:
    """Everything known about where code on ``device`` (``cpu`` or ``cuda[:N]``) runs.

    Keys: device, device_name, cuda_available, python, torch, torch_cuda, triton, fcnfast,
    git_commit, platform, cpu, torch_threads, cpu_count, load_average (where the OS has one),
    cudnn and the TF32 switches (CUDA only), extensions, backends ({name: {available, reason}})
    and auto_backend_float32 ({device type: the backend an unforced float32 call picks}).
    """

    info = {
        "device": device,
        "device_name": device_name(device),
        "cuda_available": torch.cuda.is_available(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version(),
        "fcnfast": __version__,
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    load = load_average()
    if load is not None:
        info["load_average"] = load
    if device.startswith("cuda"):
        info["cudnn"] = torch.backends.cudnn.version()
        info["allow_tf32_conv"] = torch.backends.cudnn.allow_tf32
        info["allow_tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    info["extensions"] = extensions()
    info["backends"] = {n: {"available": ok, "reason": why} for n, (ok, why) in available_backends().items()}
    auto = {"cpu": _auto_backend("cpu")}
    if torch.cuda.is_available():
        auto["cuda"] = _auto_backend("cuda")
    info["auto_backend_float32"] = auto
    return info


def _auto_backend(device_type: str) -> str:
    """The backend an unforced float32 call on ``device_type`` picks, or why none can
    (``FCNFAST_BACKEND`` naming one that cannot run: the probe reports it, it does not fail)."""
    try:
        return resolve_backend(None, torch.device(device_type), torch.float32)
    except (RuntimeError, ValueError) as exc:
        return f"error: {exc}"
