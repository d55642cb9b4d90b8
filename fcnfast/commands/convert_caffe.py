"""``fcnfast convert-caffe``: a caffemodel of the FCN release as an fcnfast checkpoint, without Caffe."""

from __future__ import annotations

import argparse
import sys

from fcnfast.commands.model_options import MODEL_HELP, model_name


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert-caffe",
        help="convert a release .caffemodel to an fcnfast checkpoint (.pth)",
        description=(
            "Read a binary Caffe .caffemodel (no Caffe needed), map every learnable layer to the network's "
            "layer of the same name, check every blob's shape, and write the weights as a checkpoint that "
            "fcnfast evaluate --checkpoint, train --weights and fcnfast.load_weights read. Missing and "
            "unexpected layers are named; nothing is written unless everything fits."
        ),
    )
    parser.add_argument("caffemodel", metavar="MODEL.caffemodel", help="the binary caffemodel")
    parser.add_argument("--model", required=True, type=model_name, metavar="NAME",
                        help=f"the network it holds: {MODEL_HELP}")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.pth", help="the checkpoint to write")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes of a one-output network trained on other classes (default: the release's)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from fcnfast.caffemodel import CaffeModelError
    from fcnfast.models.caffe_convert import CaffeConversionError, convert_caffemodel

    try:
        out = convert_caffemodel(args.caffemodel, args.model, args.output, num_classes=args.num_classes)
    except (FileNotFoundError, CaffeModelError, CaffeConversionError, ValueError) as exc:
        print(f"fcnfast convert-caffe: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fcnfast convert-caffe: error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 2
    print(f"converted {args.caffemodel} -> {out} ({args.model})")
    return 0
