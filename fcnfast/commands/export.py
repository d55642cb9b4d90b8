"""``fcnfast export``: a checkpoint as an ONNX file (dynamic batch, height and width).

    fcnfast export run/best.pth -o fcn8s.onnx
    fcnfast export fcn16s_from_caffe.pth --model fcn16s -o fcn16s.onnx

The fused heads become standard ONNX (ConvTranspose + Slice + Add): see :mod:`fcnfast.export`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnfast.errors import UserError
from fcnfast.models.registry import DEFAULT_MODEL, MODEL_NAMES_TEXT


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="write a checkpoint as an ONNX model (for ONNX Runtime, TensorRT, ...)",
        description=(
            "Load CHECKPOINT (a training checkpoint, a converted caffemodel or a plain FCN state dict) and "
            "write it as an ONNX model whose input 'image' is (batch, channels, height, width) and output "
            "'scores' is (batch, classes, height, width), batch, height and width dynamic (two-trunk "
            "networks take one input per trunk, two-headed ones give one output per head). The fused "
            "heads are exported as ConvTranspose + Slice + Add."
        ),
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint or state dict (.pth)")
    parser.add_argument("-o", "--out", required=True, metavar="FILE", help="the ONNX file to write")
    parser.add_argument("--model", default=None,
                        help=f"{MODEL_NAMES_TEXT} (default: the checkpoint's 'arch', else {DEFAULT_MODEL})")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes (default: the checkpoint's, else its score layer's rows)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from fcnfast.export import export_onnx, io_names
    from fcnfast.models import load_model

    from ._checks import check_output_dir

    check_output_dir(Path(args.out).parent, "-o")  # before loading and tracing, which take a while
    try:
        net = load_model(args.checkpoint, args.model, args.num_classes)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    try:
        path = export_onnx(net, args.out, opset=args.opset)
    except RuntimeError as exc:
        raise UserError(f"cannot export {args.checkpoint}: {exc}") from exc
    inputs, outputs = io_names(net)
    shown = ", ".join(f"'{name}' (N, {channels}, H, W)" for name, channels in inputs)
    print(f"wrote {path} ({net.layout.name}, {net.num_classes} classes; inputs {shown}, outputs "
          f"{', '.join(repr(o) for o in outputs)})")
    return 0
