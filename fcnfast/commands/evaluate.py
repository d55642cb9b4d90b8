"""``fcnfast evaluate``: the paper's four metrics and per-class IU of a checkpoint on a VOC split."""

from __future__ import annotations

import argparse
import json
import math
import sys

from fcnfast.models.registry import DEFAULT_MODEL, MODEL_NAMES


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint: pixel acc, mean acc, mean IU, fwIU and per-class IU",
        description=(
            "Run a checkpoint over a VOC-format split one image at a time, accumulate one confusion "
            "matrix (255 ignored) and print pixel accuracy, mean accuracy, mean IU, frequency-weighted "
            "IU and the IU of every class. Takes fcnfast training checkpoints and plain FCN state dicts."
        ),
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="VOC-format dataset directory")
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="checkpoint or state dict (.pth)")
    parser.add_argument("--split", default="val", help="split name under ImageSets/Segmentation (default val)")
    parser.add_argument("--model", default=None, choices=MODEL_NAMES,
                        help=f"architecture (default: the checkpoint's 'arch', else {DEFAULT_MODEL})")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes (default: the checkpoint's, else score_fr's rows)")
    parser.add_argument("--predictions", default=None, metavar="OUTDIR",
                        help="also write each prediction as a VOC palette PNG OUTDIR/<id>.png")
    parser.add_argument("--backend", default=None, choices=["auto", "reference", "cpp", "cuda", "triton"],
                        help="fused upsample/crop/add backend (default auto)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--amp", default=None, choices=["bf16", "fp16"], help="autocast the backbone")
    parser.add_argument("--num-workers", type=int, default=0, metavar="N", help="data loader workers (default 0)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _pct(value: float) -> str:
    return "   n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:6.2f}"


def run(args: argparse.Namespace) -> int:
    from fcnfast.evaluation import evaluate_checkpoint, json_safe

    from ._checks import check_output_dir

    backend = None if args.backend in (None, "auto") else args.backend
    if args.predictions:
        check_output_dir(args.predictions, "--predictions")
    m = evaluate_checkpoint(
        args.data, args.checkpoint, split=args.split, model=args.model, num_classes=args.num_classes,
        predictions_dir=args.predictions, backend=backend, device=args.device, amp=args.amp,
        num_workers=args.num_workers, progress=not args.quiet and sys.stderr.isatty(),
    )
    if args.json:
        out = {k: m[k] for k in ("arch", "num_classes", "images", "pixels", "pixel_acc", "mean_acc", "mean_iu", "fw_iu")}
        out["iu"] = dict(zip(m["class_names"], m["iu"]))
        print(json.dumps(json_safe(out), indent=2))
        return 0
    print(f"{m['arch']} on {args.data} [{args.split}]: {m['images']} images, {m['pixels']} labelled pixels")
    for key, label in (("pixel_acc", "pixel acc"), ("mean_acc", "mean acc"), ("mean_iu", "mean IU"), ("fw_iu", "fwIU")):
        print(f"{label:<12}{_pct(m[key])}")
    print("per-class IU")
    width = max(len(n) for n in m["class_names"]) + 2
    for name, iu in zip(m["class_names"], m["iu"]):
        print(f"  {name:<{width}}{_pct(iu)}")
    if args.predictions:
        print(f"predictions: {m['images']} palette PNGs in {args.predictions}")
    return 0
