"""``fcnfast info``: versions, device, built extensions, and every backend with why it can or cannot run."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show versions, device, extensions and backends",
        description=(
            "Show fcnfast's, Python's, torch's and Triton's versions, the device, which compiled "
            "extensions were built, and every backend of the fused op with whether it can run here "
            "and why not; last, the backend the automatic choice (or FCNFAST_BACKEND) picks per device."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fcnfast.environment import probe

    info = probe("cuda" if torch.cuda.is_available() else "cpu")
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    width = 14
    for key in ("fcnfast", "python", "torch", "torch_cuda", "triton", "cuda_available"):
        print(f"{key:<{width}} {info[key]}")
    print(f"{'device':<{width}} {info['device']}: {info['device_name']}")
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
