"""Data problems reported before a run starts, and on one line while it runs.

:func:`check_labels` reads every label of a split once, so a value outside the classes (a wrong
``--num-classes``, a colour PNG) names its file before the run directory is created, not as a
DataLoader worker's traceback after it. :func:`batches` turns a file that fails to load in a
worker later on (a corrupt image) into a TrainingError with the worker's one-line message.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import torch

from ..datasets import SegmentationDataset
from ..datasets.decode import check_label_values
from ..datasets.loader import loader_batches
from .config import TrainingError

__all__ = ["batches", "check_labels", "worker_error_message"]


def check_labels(dataset: SegmentationDataset) -> None:
    """Read every label of ``dataset`` (each of its label sets); raises TrainingError naming the
    first file with a value outside ``{0..num_classes-1, 255}`` for its label set."""
    jobs = [(dataset.path(i, label), label, n) for i in range(len(dataset))
            for label, n in zip(dataset.labels, dataset.class_counts)]

    def check(job) -> None:
        path, label, n = job
        check_label_values(dataset.load_label(label, path), n, f"label image {path}")

    # Decoding PNGs releases the GIL: a few threads read VOC's 3k labels in about a second.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        try:
            list(pool.map(check, jobs))
        except (ValueError, FileNotFoundError) as exc:
            raise TrainingError(str(exc)) from exc


def worker_error_message(exc: BaseException) -> str:
    """The original one-line message of an exception a DataLoader worker raised (torch re-raises
    it in the main process as "Caught ValueError in DataLoader worker process 0." plus the
    worker's whole traceback); ``str(exc)`` for any other exception."""
    text = str(exc)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    return re.sub(r"^\w+(\.\w+)*: ", "", last.strip())


def batches(loader: torch.utils.data.DataLoader) -> Iterator:
    """``loader``'s batches; a ValueError or FileNotFoundError while loading one (an unreadable
    file, named by its message) becomes a TrainingError with :func:`worker_error_message`. The
    loader's workers stop when this generator ends (:mod:`fcnfast.datasets.loader`)."""
    try:  # only the loader's own errors arrive here: the caller's never enter a generator
        yield from loader_batches(loader)
    except (ValueError, FileNotFoundError) as exc:
        raise TrainingError(worker_error_message(exc)) from exc
