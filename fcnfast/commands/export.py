"""``fcnfast export``: a checkpoint as an ONNX file (dynamic batch, height and width).

    fcnfast export run/best.pth -o fcn8s.onnx
    fcnfast export fcn16s_from_caffe.pth --model fcn16s -o fcn16s.onnx

The fused heads become standard ONNX (ConvTranspose + Slice + Add): see :mod:`fcnfast.export`.
"""

from __future__ import annotations

import argparse
import sys

from fcnfast.models.registry import DEFAULT_MODEL, MODEL_NAMES_TEXT


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="write a checkpoint as an ONNX model (for ONNX Runtime, TensorRT, ...)",
        description=(
            "Load CHECKPOINT (a training checkpoint or a plain FCN state dict) and write it as an ONNX "
            "model whose input 'image' is (batch, 3, height, width) and output 'scores' is (batch, "
            "classes, height, width), all four sizes dynamic. The fused heads are exported as "
            "ConvTranspose + Slice + Add."
        ),
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint or state dict (.pth)")
    parser.add_argument("-o", "--out", required=True, metavar="FILE", help="the ONNX file to write")
    parser.add_argument("--model", default=None,
                        help=f"{MODEL_NAMES_TEXT} (default: the checkpoint's 'arch', else {DEFAULT_MODEL})")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes (default: the checkpoint's, else score_fr's rows)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.set_defaults(func=run)
    return parser


def _error(message: str) -> int:
    print(f"fcnfast export: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from fcnfast.checkpoints import read_checkpoint
    from fcnfast.evaluation import checkpoint_model
    from fcnfast.export import export_onnx
    from fcnfast.models import build_model, load_weights

    try:
        ckpt = read_checkpoint(args.checkpoint)
        name, classes, state = checkpoint_model(ckpt, args.checkpoint, args.model, args.num_classes)
        net = load_weights(build_model(name, classes), state)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        return _error(str(exc))
    try:
        path = export_onnx(net, args.out, opset=args.opset)
    except (OSError, RuntimeError) as exc:
        return _error(f"cannot write {args.out}: {exc}")
    print(f"wrote {path} ({name}, {classes} classes; inputs 'image' (N, 3, H, W), outputs 'scores')")
    return 0
