"""A run's checkpoint: what it holds, and reading it back to resume the run.

A checkpoint holds ``model_state_dict``, ``optim_state_dict`` (and ``scaler_state_dict`` with
fp16), the run's :class:`Progress` (``iteration``, ``best_mean_iu``, ``best_iteration``,
``metrics``, ``loss_window``, ``elapsed_s``), ``arch``, ``num_classes``, the JSON-safe
``config``, ``world_size``, ``global_batch`` and ``fcnfast_version``; it is readable with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from .._version import __version__
from ..checkpoints import read_checkpoint
from ..evaluation import json_safe
from .config import PRESET_FIELDS, RUNTIME_FIELDS, TrainConfig, TrainingError
from .rundir import CHECKPOINT_NAME

__all__ = ["FORMAT", "Progress", "make_checkpoint", "read_run_checkpoint", "resumed_config"]

FORMAT = "fcnfast-train/1"
# Entries without which a checkpoint cannot continue a run.
_REQUIRED = ("model_state_dict", "optim_state_dict", "iteration", "config")


@dataclasses.dataclass
class Progress:
    """How far a run has come: its state besides the model's and optimizer's tensors."""

    iteration: int = 0  # SGD steps done
    best_mean_iu: Optional[float] = None
    best_iteration: Optional[int] = None
    metrics: Optional[Dict[str, Any]] = None  # the last validation's
    window_sum: float = 0.0  # losses since the last log row, which averages them
    window_count: int = 0
    elapsed_s: float = 0.0  # training time up to ``iteration``, over every session of the run

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> "Progress":
        """The progress saved in ``checkpoint`` (entries older checkpoints lack start at zero)."""
        window = checkpoint.get("loss_window") or [0.0, 0]
        return cls(
            iteration=int(checkpoint["iteration"]), best_mean_iu=checkpoint.get("best_mean_iu"),
            best_iteration=checkpoint.get("best_iteration"), metrics=checkpoint.get("metrics"),
            window_sum=float(window[0]), window_count=int(window[1]),
            elapsed_s=float(checkpoint.get("elapsed_s") or 0.0),
        )


def make_checkpoint(config: TrainConfig, progress: Progress, *, model_state: Mapping[str, Any],
                    optim_state: Mapping[str, Any], scaler_state: Optional[Mapping[str, Any]],
                    world_size: int, global_batch: int) -> Dict[str, Any]:
    """The dict a run saves (see the module docstring); ``scaler_state`` None leaves it out."""

    ckpt: Dict[str, Any] = {
        "format": FORMAT,
        "arch": config.model,
        "num_classes": config.num_classes,
        "iteration": progress.iteration,
        "best_mean_iu": progress.best_mean_iu,
        "best_iteration": progress.best_iteration,
        "metrics": json_safe(progress.metrics) if progress.metrics else None,
        "loss_window": [float(progress.window_sum), int(progress.window_count)],
        "elapsed_s": float(progress.elapsed_s),
        "model_state_dict": model_state,
        "optim_state_dict": optim_state,
        "config": config.to_dict(),
        "world_size": world_size,
        "global_batch": global_batch,
        "fcnfast_version": __version__,
    }
    if scaler_state is not None:
        ckpt["scaler_state_dict"] = scaler_state
    return ckpt


def read_run_checkpoint(out: os.PathLike) -> Dict[str, Any]:
    """``out/checkpoint.pth``, read whole (its tensors are all needed to resume).

    Raises TrainingError when there is no checkpoint in ``out``, when it is truncated or
    corrupt, or when it was not written by ``fcnfast train``.
    """
    path = Path(out) / CHECKPOINT_NAME
    if not path.is_file():
        raise TrainingError(
            f"--resume: no checkpoint to resume in {out} ({path} does not exist); start the run without --resume"
        )
    try:
        # Not memory-mapped: the optimizer state loaded from it is updated in place.
        checkpoint = read_checkpoint(path, mmap=False)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingError(str(exc)) from exc
    missing = [k for k in _REQUIRED if checkpoint.get(k) is None]
    if "config" not in missing and not checkpoint["config"]:
        missing.append("config")
    if missing:
        raise TrainingError(f"checkpoint {path} is not a training checkpoint of fcnfast train "
                            f"(lacks {', '.join(missing)})")
    return checkpoint


def resumed_config(checkpoint: Mapping[str, Any], overrides: Mapping[str, Any]) -> TrainConfig:
    """The config to continue a run: ``checkpoint``'s config with ``overrides`` (the options given
    explicitly, e.g. a longer ``iterations``; None values are ignored) on top, and ``resume`` set.

    Runtime fields (data, out, device, num_workers, quiet, init, weights) come from ``overrides``
    only; a preset given explicitly and different from the run's replaces the run's preset values.
    """
    saved = dict(checkpoint["config"])
    for name in RUNTIME_FIELDS:
        saved.pop(name, None)
    if "preset" in overrides and overrides["preset"] != saved.get("preset"):
        for name in PRESET_FIELDS:
            saved.pop(name, None)
    merged = {**saved, **{k: v for k, v in overrides.items() if v is not None}}
    merged["resume"] = True
    return TrainConfig.from_dict(merged)
