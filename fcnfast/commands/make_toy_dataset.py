"""``fcnfast make-toy-dataset``: write a small synthetic dataset (for smoke tests and demos), VOC-format
or in the release's layout of PASCAL-Context, NYUDv2 or SIFT Flow."""

from __future__ import annotations

import argparse
import sys

from fcnfast.datasets import DATASET_NAMES
from fcnfast.errors import UserError

from ._checks import check_output_dir
from ._errors import run_command

# What the printed next step adds to --preset modern. On the default toy set (8 images, fcn8s,
# batch 8) a 2-core CPU takes 7-15 s a step, and the loss falls from ln 21 = 3.04 to about 1.7 by
# step 50; the paper preset's stays at 3.04. (A random trunk needs longer than this to paint the
# shapes: mean IU stays at the background's for the first 60 steps.)
TOY_TRAIN_OPTIONS = ("--iterations", "100", "--val-every", "25")


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "make-toy-dataset",
        help="write a small synthetic VOC-format segmentation dataset",
        description=(
            "Write JPEGImages/, SegmentationClass/ (VOC palette PNGs with a 255 boundary ring) and "
            "ImageSets/Segmentation/{train,val,trainval}.txt under DIR. Coloured rectangles and "
            "ellipses on a noisy background; each class has its own colour. Deterministic for a seed. "
            "--dataset pascalcontext, nyud or siftflow writes the release's layout of that dataset instead "
            "(its classes and label files; --size only). "
            "The next step it prints trains with --preset modern, whose loss falls from the first "
            "steps: the paper preset (fixed lr 1e-14 on a loss summed over pixels) is tuned for a "
            "VGG16-initialised trunk and 500x500 images, and from a random trunk on these small "
            "images its steps are too small to change the loss at all."
        ),
    )
    parser.add_argument("dir", metavar="DIR", help="output directory (created if missing; must be empty unless --force)")
    parser.add_argument("--force", action="store_true",
                        help="write into DIR even if it holds files (same-named files are overwritten)")
    parser.add_argument("--dataset", default="voc", choices=DATASET_NAMES, help="which layout to write (default voc)")
    parser.add_argument("--train", type=int, default=8, metavar="N", help="training images (default 8)")
    parser.add_argument("--val", type=int, default=4, metavar="N", help="validation images (default 4)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="size of every image (default 64 96)")
    parser.add_argument("--min-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="random sizes: smallest H W (use with --max-size)")
    parser.add_argument("--max-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="random sizes: largest H W (use with --min-size)")
    parser.add_argument("--num-classes", type=int, default=21, help="classes including background (default 21)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run)
    return parser


def _run_release_layout(args: argparse.Namespace) -> int:
    from fcnfast.datasets import TOY_DATASETS

    try:
        info = TOY_DATASETS[args.dataset](args.dir, args.train, args.val, tuple(args.size) if args.size else None,
                                          seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    print(f"wrote toy {args.dataset} dataset to {info['root']} (the release's layout)")
    for name, ids in info["splits"].items():
        print(f"  split {name:<9}{len(ids)} ids")
    print(f"  num_classes {info['num_classes']}, seed {args.seed}")
    return 0


def run(args: argparse.Namespace) -> int:
    from fcnfast.data import make_toy_dataset

    # The options first: a wrong option is reported whatever the folder holds.
    if args.dataset != "voc" and (args.min_size or args.max_size or args.num_classes != 21):
        raise UserError(f"--dataset {args.dataset} takes --size only (its classes are the dataset's)")
    root = check_output_dir(args.dir, "DIR")
    if not args.force and root.is_dir() and any(root.iterdir()):
        raise UserError(f"{root} is not empty; a toy dataset would overwrite its split lists and same-named "
                        f"images: choose an empty or new folder, or pass --force")
    if args.dataset != "voc":
        return _run_release_layout(args)
    try:
        info = make_toy_dataset(
            args.dir,
            num_train=args.train,
            num_val=args.val,
            size=tuple(args.size) if args.size else None,
            min_size=tuple(args.min_size) if args.min_size else None,
            max_size=tuple(args.max_size) if args.max_size else None,
            num_classes=args.num_classes,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    root = info["root"]
    sizes = list(info["sizes"].values())
    hs = [h for h, _ in sizes]
    ws = [w for _, w in sizes]
    size_text = (
        f"{hs[0]}x{ws[0]} (HxW)" if len(set(sizes)) == 1
        else f"H {min(hs)}..{max(hs)}, W {min(ws)}..{max(ws)}"
    ) if sizes else "-"
    print(f"wrote toy VOC dataset to {root}")
    print(f"  images      {root / 'JPEGImages'} ({len(sizes)} .jpg, {size_text})")
    print(f"  labels      {root / 'SegmentationClass'} ({len(sizes)} palette .png, 255 = ignore)")
    for name, ids in info["splits"].items():
        print(f"  split {name:<9}{root / 'ImageSets' / 'Segmentation' / (name + '.txt')} ({len(ids)} ids)")
    print(f"  num_classes {info['num_classes']}, seed {args.seed}")
    print("next: train on it (the modern preset's loss falls from a random trunk; the paper preset's does not move):")
    print(f"  {' '.join(next_step(root, info['num_classes']))}")
    return 0


def next_step(root, num_classes: int) -> list:
    """The ``fcnfast train`` command that make-toy-dataset prints as the next step (argv)."""
    return ["fcnfast", "train", "--data", str(root), "--preset", "modern", *TOY_TRAIN_OPTIONS,
            "--num-classes", str(num_classes), "--out", "runs/toy"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fcnfast")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["make-toy-dataset", *(sys.argv[1:] if argv is None else argv)])
    return run_command("make-toy-dataset", args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
