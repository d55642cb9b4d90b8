"""``fcnfast info``: versions, device, built extensions, and every backend with why it can or cannot run."""

from __future__ import annotations

import argparse
import json
import platform


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="show versions, device, extensions and backends")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def collect() -> dict:
    import torch

    import fcnfast
    from fcnfast.backends import _extensions, available_backends, resolve_backend

    info = {
        "fcnfast": fcnfast.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads",
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception as exc:  # ImportError, or a broken install
        info["triton"] = f"unavailable ({type(exc).__name__}: {exc})"
    extensions = {}
    for name in ("_C", "_cuda"):
        module, reason = _extensions.load(name)
        extensions[f"fcnfast.{name}"] = module.build_info() if module is not None else reason
    info["extensions"] = extensions
    info["backends"] = {name: {"available": ok, "reason": why} for name, (ok, why) in available_backends().items()}
    auto = {"cpu": resolve_backend(None, torch.device("cpu"), torch.float32)}
    if torch.cuda.is_available():
        auto["cuda"] = resolve_backend(None, torch.device("cuda"), torch.float32)
    info["auto_backend_float32"] = auto
    return info


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    width = 14
    for key in ("fcnfast", "python", "torch", "torch_cuda", "triton", "cuda_available", "device"):
        print(f"{key:<{width}} {info[key]}")
    print("extensions")
    for name, value in info["extensions"].items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"  {name:<{width - 2}} {value}")
    print("backends")
    for name, entry in info["backends"].items():
        mark = "yes" if entry["available"] else "no "
        print(f"  {name:<{width - 2}} {mark}  {entry['reason']}")
    auto = ", ".join(f"{dev} -> {name}" for dev, name in info["auto_backend_float32"].items())
    print(f"auto (float32) {auto}")
    return 0
