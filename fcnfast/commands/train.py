"""``fcnfast train``: train an FCN on one of the release's datasets (one process, or many under torchrun)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcnfast.commands.model_options import MODEL_HELP, add_dataset_option, model_name
from fcnfast.models.registry import DEFAULT_MODEL

_PRESET_HELP = (
    "paper: SGD momentum 0.99, wd 5e-4, batch 1, loss summed over pixels, the fixed lr and iterations of "
    "the model's release solver (voc-fcn32s 1e-10, voc-fcn16s 1e-12, voc-fcn8s 1e-14, 100k iterations); "
    "modern: SGD momentum 0.9, wd 5e-4, lr 1e-3 with poly decay, batch 8 (padded), "
    "loss averaged over pixels, 20k iterations. Both: biases 2x lr and no decay, frozen bilinear upsampling"
)


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train an FCN on VOC, PASCAL-Context, NYUDv2 or SIFT Flow",
        description=(
            "Train a network of the FCN release on its dataset (VOC format: JPEGImages/, SegmentationClass/, "
            "ImageSets/Segmentation/{train,val}.txt; the others in the release's layouts). A two-headed "
            "model (siftflow-*) trains on the sum of both losses. Writes RUNDIR/checkpoint.pth (latest), "
            "RUNDIR/best.pth (best validation mean IU), RUNDIR/log.csv, log.jsonl and config.json. "
            "Multi-GPU / multi-process: torchrun --nproc_per_node N -m fcnfast train ...; "
            "--batch-size is per process, so the global batch is batch-size x N, and a run on N "
            "processes takes the same steps as one process with the global batch."
        ),
        epilog="Options left out take the preset's value; with --resume, the run's saved value.",
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    parser.add_argument("--model", default=None, type=model_name, metavar="NAME",
                        help=f"the network: {MODEL_HELP} (default {DEFAULT_MODEL}; with --resume, the checkpoint's)")
    add_dataset_option(parser)
    parser.add_argument("--out", required=True, metavar="RUNDIR", help="run directory for checkpoints and logs")
    parser.add_argument("--preset", default=None, choices=["paper", "modern"], help=_PRESET_HELP + " (default paper)")
    parser.add_argument("--iterations", type=int, default=None, metavar="N", help="total SGD steps (global batches)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="B",
                        help="images per process and step (global batch = B x processes)")
    parser.add_argument("--lr", type=float, default=None, help="base learning rate (weights; biases get 2x)")
    parser.add_argument("--momentum", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--lr-policy", default=None, choices=["fixed", "poly"], help="fixed (paper) or poly (modern)")
    parser.add_argument("--loss-normalization", default=None, choices=["image", "pixel", "none"],
                        help="image: per-image pixel sums averaged over the batch (paper; = sum at batch 1); "
                             "pixel: mean over valid pixels (modern); none: sum over the batch")
    parser.add_argument("--dropout", type=float, default=None,
                        help="fc6/fc7 dropout probability (default 0.5). With 0, runs on different "
                             "process counts take identical steps")
    parser.add_argument("--init", default=None, metavar="VGG16.pth",
                        help="initialise conv1_1..fc7 from torchvision-layout VGG16 weights")
    parser.add_argument("--weights", default=None, metavar="CKPT",
                        help="start from FCN weights (a state dict or a training checkpoint)")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUNDIR from RUNDIR/checkpoint.pth")
    parser.add_argument("--val-every", type=int, default=None, metavar="N",
                        help="validate every N iterations and at the end (0: never)")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                        help="write RUNDIR/checkpoint.pth every N iterations (always at the end)")
    parser.add_argument("--log-every", type=int, default=None, metavar="N",
                        help="a log.csv row every N iterations, loss averaged over them (default 20)")
    parser.add_argument("--amp", default=None, choices=["bf16", "fp16"],
                        help="mixed precision (autocast; fp16 adds a GradScaler and needs CUDA)")
    parser.add_argument("--backend", default=None, choices=["auto", "reference", "cpp", "cuda", "triton"],
                        help="fused upsample/crop/add backend (default auto)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--num-workers", type=int, default=None, metavar="N", help="data loader workers (default 2)")
    parser.add_argument("--seed", type=int, default=None, help="seed of init, data order, dropout, augmentation (default 0)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes including background (default: the dataset's; one-output models only)")
    parser.add_argument("--train-split", default=None, help="training split name (default: the dataset's, e.g. train)")
    parser.add_argument("--val-split", default=None, help="validation split name (default: the dataset's, e.g. val)")
    parser.add_argument("--augment", action="store_true", default=None,
                        help="random horizontal flips and rescaling by 0.5..2")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    parser.set_defaults(func=run)
    return parser


# argparse dest -> TrainConfig field
_FIELDS = (
    "model", "preset", "iterations", "batch_size", "lr", "momentum", "weight_decay", "lr_policy",
    "loss_normalization", "dropout", "init", "weights", "val_every", "checkpoint_every", "log_every", "amp",
    "backend", "device", "num_workers", "seed", "dataset", "num_classes", "train_split", "val_split", "augment",
)


def run(args: argparse.Namespace) -> int:
    from fcnfast.training import CHECKPOINT_NAME, TrainConfig, TrainingInterrupted, resume, train

    from ._checks import check_output_dir

    explicit = {name: getattr(args, name) for name in _FIELDS if getattr(args, name) is not None}
    explicit.update(data=args.data, out=args.out, quiet=args.quiet)
    explicit.setdefault("device", "auto")
    check_output_dir(args.out, "--out")
    try:
        summary = resume(args.out, explicit) if args.resume else train(TrainConfig(**explicit))
    except TrainingInterrupted as exc:
        if _rank() == 0:
            print(f"fcnfast train: {exc}; continue with: fcnfast train --resume --data {args.data} "
                  f"--out {args.out}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Only --resume from a checkpoint that exists: before the first one there is nothing to resume.
        checkpoint = Path(args.out) / CHECKPOINT_NAME
        if checkpoint.is_file():
            message = f"interrupted; the last checkpoint is {checkpoint}: continue with --resume"
        else:
            message = "interrupted before any checkpoint was written: nothing to resume, start the run again"
        print(f"fcnfast train: {message}", file=sys.stderr)
        return 130
    if summary["world_size"] > 1 and _rank() != 0:
        return 0
    if not args.quiet:
        best = summary["best_mean_iu"]
        best_text = f"best mean IU {100 * best:.2f} at iteration {summary['best_iteration']}" if best is not None else "no validation"
        print(f"done: iteration {summary['iteration']} ({summary['global_batch']} images per step on "
              f"{summary['world_size']} process(es), {summary['device']}); {best_text}; "
              f"checkpoint {summary['out']}/checkpoint.pth")
    return 0


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))
