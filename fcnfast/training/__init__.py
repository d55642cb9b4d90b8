"""Training FCNs: the paper's recipe and a modern one, one process or many (torchrun).

::

    from fcnfast.training import TrainConfig, train
    summary = train(TrainConfig(data="VOC2012", model="fcn8s", out="runs/fcn8s", preset="modern"))

One job per module: :mod:`.config` (TrainConfig, presets), :mod:`.sampling` (data order and
randomness), :mod:`.optim` (loss normalisation, parameter groups, lr schedule),
:mod:`.distributed` (torchrun), :mod:`.rundir` (the run directory's files and log),
:mod:`.lock` (one run per directory), :mod:`.interrupt` (SIGINT/SIGTERM: save, then stop),
:mod:`.data_checks` (labels checked before the run, loader errors on one line),
:mod:`.run_checkpoint` (what a checkpoint holds, resuming), :mod:`.trainer` (the loop).
Scoring lives in :mod:`fcnfast.evaluation`, checkpoint file I/O in :mod:`fcnfast.checkpoints`.

**Batches and processes.** ``batch_size`` is per process; the *global batch* is
``batch_size * world_size``. A run on W processes with batch B takes the same steps as one
process with batch W*B (up to float summation order; with dropout 0, and with images of equal
size, since each process pads only its own slice), and ``--resume`` continues exactly where an
uninterrupted run would be: same batches, same dropout masks, same losses.

**Outputs** in ``out``: ``checkpoint.pth`` (latest) and ``best.pth`` (best mean IU), written
atomically; ``log.csv`` and ``log.jsonl``; ``config.json``; ``.lock`` while a run uses it.
"""

from ..checkpoints import read_checkpoint, save_checkpoint
from ..evaluation import METRIC_NAMES, eval_loader, evaluate, evaluate_checkpoint
from ..images import save_label_png as save_prediction  # its name before fcnfast.images existed
from .config import PAPER_LR, PRESETS, TrainConfig, TrainingError
from .distributed import DistInfo, setup_distributed
from .interrupt import TrainingInterrupted
from .lock import RunLock
from .optim import lr_factor, param_groups, scale_loss
from .run_checkpoint import read_run_checkpoint, resumed_config
from .rundir import BEST_NAME, CHECKPOINT_NAME, LOG_FIELDS, RunLog, read_log
from .sampling import IterationBatchSampler
from .trainer import Trainer, resume, train

__all__ = [
    "PRESETS",
    "PAPER_LR",
    "TrainConfig",
    "TrainingError",
    "TrainingInterrupted",
    "RunLock",
    "Trainer",
    "train",
    "resume",
    "evaluate",
    "evaluate_checkpoint",
    "eval_loader",
    "IterationBatchSampler",
    "read_checkpoint",
    "read_run_checkpoint",
    "resumed_config",
    "save_checkpoint",
    "save_prediction",
    "param_groups",
    "lr_factor",
    "scale_loss",
    "read_log",
    "RunLog",
    "DistInfo",
    "setup_distributed",
    "CHECKPOINT_NAME",
    "BEST_NAME",
    "LOG_FIELDS",
    "METRIC_NAMES",
]
