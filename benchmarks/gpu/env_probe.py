"""Step ``env`` of validate.sh: the machine, its GPU and versions, and an import check of
everything the later steps need (the GPU machine has no package registry).

Writes env.json; exits 1 when a needed import fails, so the run shows it first."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
from typing import List, Optional

# module -> why the validation needs it. imgviz is deliberately absent: nothing on the GPU
# path may need it (that machine does not have it).
NEEDED = {
    "torch": "everything", "triton": "the triton backend", "numpy": "reports", "PIL": "fcnfast.data",
    "tqdm": "progress bars", "matplotlib": "bench.png", "pytest": "tests", "pytest_benchmark": "tests",
    "hypothesis": "fuzz tests",
}
# The GPU run builds with --no-build-isolation, so the build's own requirements must be
# importable there; the dry run keeps the installed build and does not need them.
BUILD = {"pybind11": "the build", "ninja": "the build", "setuptools": "the build"}
OPTIONAL = {"xdist": "parallel tests (pytest -n)"}
SMI_FIELDS = ("name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,"
              "power.draw,power.limit,temperature.gpu,utilization.gpu,persistence_mode")


def _run(cmd: List[str]) -> Optional[str]:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (done.stdout or done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed: {exc}"


def _imports(mode: str) -> dict:
    required = {**NEEDED, **(BUILD if mode == "gpu" else {})}
    result = {}
    for name, why in {**NEEDED, **BUILD, **OPTIONAL}.items():
        try:
            module = importlib.import_module(name)
            result[name] = {"ok": True, "version": getattr(module, "__version__", "?"), "for": why}
        except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
            result[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "for": why,
                            "required": name in required}
    return result


def _fcnfast_without_imgviz() -> dict:
    """Import fcnfast's GPU-path modules in a child and report whether imgviz got imported."""
    code = ("import sys, fcnfast, fcnfast.benchmark, fcnfast.optimize, fcnfast.cli; "
            "import fcnfast.backends as b; print(int('imgviz' in sys.modules)); "
            "print({k: v[0] for k, v in b.available_backends().items()})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or len(lines) < 2:
        return {"ok": False, "error": (done.stderr or done.stdout).strip()[-800:]}
    return {"ok": lines[0] == "0", "imgviz_imported": lines[0] == "1", "backends": lines[1]}


def probe(mode: str) -> dict:
    import torch

    info: dict = {
        "mode": mode, "python": platform.python_version(), "executable": sys.executable,
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "nvcc": _run(["nvcc", "--version"]), "compute_sanitizer": _run(["compute-sanitizer", "--version"]),
        "imports": _imports(mode),
    }
    info["nvcc"] = info["nvcc"].splitlines()[-1] if info["nvcc"] else None
    if info["compute_sanitizer"]:
        info["compute_sanitizer"] = info["compute_sanitizer"].splitlines()[-1]
    smi = _run(["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader"])
    info["nvidia_smi"] = dict(zip(SMI_FIELDS.split(","), (v.strip() for v in smi.split(",")))) if smi and not smi.startswith("failed") else (
        smi or "skipped: nvidia-smi not found")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                       "memory_gb": round(p.total_memory / 1e9, 1), "l2_mb": round(getattr(p, "L2_cache_size", 0) / 2**20, 1),
                       "device_count": torch.cuda.device_count()}
    else:
        info["gpu"] = "skipped: torch sees no CUDA device"
    info["fcnfast_import"] = _fcnfast_without_imgviz()
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", default="gpu", choices=["gpu", "dry-run"])
    args = parser.parse_args(argv)
    info = probe(args.mode)
    missing = [n for n, r in info["imports"].items() if not r["ok"] and r.get("required")]
    info["missing_imports"] = missing
    ok = not missing and info["fcnfast_import"].get("ok", False)
    if args.mode == "gpu" and not isinstance(info["gpu"], dict):
        ok = False
    with open(args.out, "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps({k: info[k] for k in ("gpu", "torch", "nvcc", "missing_imports", "fcnfast_import")}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
