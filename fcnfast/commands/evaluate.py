"""``fcnfast evaluate``: the paper's four metrics and per-class IU of a checkpoint on a split of its
dataset, each output (head) on its own, beside the paper's published numbers."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Optional

from fcnfast.commands.model_options import MODEL_HELP, add_dataset_option, model_name
from fcnfast.models.registry import DEFAULT_MODEL


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint: pixel acc, mean acc, mean IU, fwIU and per-class IU",
        description=(
            "Run a checkpoint over a split of its dataset one image at a time, accumulate one confusion "
            "matrix per output (255 ignored) and print pixel accuracy, mean accuracy, mean IU, frequency-weighted "
            "IU and the IU of every class, beside the paper's published numbers for the network. A two-headed "
            "model (siftflow-*) is scored on both heads, separately. Takes fcnfast training checkpoints, "
            "converted caffemodels (fcnfast convert-caffe) and plain FCN state dicts."
        ),
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="checkpoint or state dict (.pth)")
    add_dataset_option(parser)
    parser.add_argument("--split", default=None, help="split name (default: the dataset's validation split, e.g. val)")
    parser.add_argument("--model", default=None, type=model_name, metavar="NAME",
                        help=f"the network: {MODEL_HELP} (default: the checkpoint's 'arch', else {DEFAULT_MODEL})")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes (default: the checkpoint's, else its score layer's rows; one-output models only)")
    parser.add_argument("--predictions", default=None, metavar="OUTDIR",
                        help="also write each prediction as a VOC palette PNG OUTDIR/<id>.png (OUTDIR/<labels>/ per head)")
    parser.add_argument("--backend", default=None, choices=["auto", "reference", "cpp", "cuda", "triton"],
                        help="fused upsample/crop/add backend (default auto)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--amp", default=None, choices=["bf16", "fp16"], help="autocast the backbone")
    parser.add_argument("--num-workers", type=int, default=0, metavar="N", help="data loader workers (default 0)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _pct(value: Optional[float]) -> str:
    return "   n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:6.2f}"


def _paper(value: Optional[float]) -> str:
    return "      -" if value is None else f"{value:7.1f}"


_ROWS = (("pixel_acc", "pixel acc"), ("mean_acc", "mean acc"), ("mean_iu", "mean IU"), ("fw_iu", "fwIU"))


def _print_task(label: str, m: dict, several: bool) -> None:
    paper = m.get("paper")
    head = f"{label} ({len(m['class_names'])} classes)" if several else ""
    if head:
        print(head)
    print(f"{'':<12}{'fcnfast':>7}" + (f"{'paper':>8}   ({paper['source']})" if paper else "   (no published numbers)"))
    for key, name in _ROWS:
        print(f"{name:<12}{_pct(m[key]):>7}" + (f" {_paper(paper[key])}" if paper else ""))
    print("per-class IU")
    width = max(len(n) for n in m["class_names"]) + 2
    for name, iu in zip(m["class_names"], m["iu"]):
        print(f"  {name:<{width}}{_pct(iu)}")


def run(args: argparse.Namespace) -> int:
    from fcnfast.evaluation import evaluate_checkpoint, json_safe

    from ._checks import check_output_dir

    backend = None if args.backend in (None, "auto") else args.backend
    if args.predictions:
        check_output_dir(args.predictions, "--predictions")
    m = evaluate_checkpoint(
        args.data, args.checkpoint, split=args.split, model=args.model, dataset=args.dataset,
        num_classes=args.num_classes, predictions_dir=args.predictions, backend=backend, device=args.device,
        amp=args.amp, num_workers=args.num_workers, progress=not args.quiet and sys.stderr.isatty(),
    )
    if args.json:
        out = {k: m[k] for k in ("arch", "dataset", "split", "num_classes", "images", "pixels", "pixel_acc",
                                 "mean_acc", "mean_iu", "fw_iu")}
        out["iu"] = dict(zip(m["class_names"], m["iu"]))
        out["tasks"] = {label: {**{k: t[k] for k, _ in _ROWS}, "pixels": t["pixels"], "paper": t["paper"],
                                "iu": dict(zip(t["class_names"], t["iu"]))} for label, t in m["tasks"].items()}
        print(json.dumps(json_safe(out), indent=2))
        return 0
    print(f"{m['arch']} on {args.data} ({m['dataset']} [{m['split']}]): {m['images']} images, "
          f"{m['pixels']} labelled pixels")
    for label, task in m["tasks"].items():
        _print_task(label, task, len(m["tasks"]) > 1)
    if args.predictions:
        print(f"predictions: {m['images']} palette PNGs per output in {args.predictions}")
    return 0
