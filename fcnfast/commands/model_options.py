"""Options shared by the commands that name a model or a dataset: one spelling of each, from the
registries, so help texts, accepted values and errors agree everywhere."""

from __future__ import annotations

import argparse

from fcnfast.datasets import DATASET_NAMES
from fcnfast.models.registry import MODEL_NAMES_TEXT, canonical_model_name

__all__ = ["model_name", "add_dataset_option", "MODEL_HELP"]

#: The models, for help texts.
MODEL_HELP = f"{MODEL_NAMES_TEXT} (the release's folder names; fcn32s .. fcn8s-atonce name the VOC ones)"


def model_name(text: str) -> str:
    """argparse ``type=``: the registry name ``text`` spells; an unknown one is a usage error (exit 2)."""
    try:
        return canonical_model_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_dataset_option(parser: argparse.ArgumentParser) -> None:
    """``--dataset``: which reader (and so which layout) ``--data`` is read with."""
    parser.add_argument("--dataset", default=None, choices=DATASET_NAMES,
                        help="the layout of --data: voc (VOC format), pascalcontext, nyud or siftflow, each as the "
                             "FCN release reads it (default: the model's; docs/design.md §10)")
