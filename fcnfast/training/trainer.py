"""The training loop: :class:`Trainer`, :func:`train` (a new run) and :func:`resume` (continue one).

Each step draws this rank's slice of the global batch (:mod:`.sampling`), computes the loss
normalised over the global batch (:mod:`.optim`), and steps SGD; every ``val_every`` steps it
scores the validation split (:mod:`fcnfast.evaluation`), every ``log_every`` it writes a log row,
and every ``checkpoint_every`` (and at a new best mean IU) it saves a checkpoint (:mod:`.run_checkpoint`).
Only rank 0 writes files and shows the progress bar; validation metrics are summed over ranks.

A run holds its directory's lock (:mod:`.lock`) from the end of its setup to its end, so a
second run on the same ``out`` is refused; all of its checks (options, data, every label
against ``num_classes``, backend, weights) run before the directory is created or written.
SIGINT/SIGTERM stop it after the current step with a checkpoint (:mod:`.interrupt`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..amp import autocast
from ..checkpoints import atomic_write_text, save_checkpoint
from ..datasets import IGNORE_INDEX, RandomFlipScale, SegmentationDataset, open_dataset, pad_collate
from ..errors import os_error_problem
from ..evaluation import METRIC_NAMES, eval_loader, evaluate, run_model
from ..models import build_model, load_weights, lookup_model_name, model_layout, vgg16_init
from ..wrappers import unwrap_model
from .config import TrainConfig, TrainingError
from .data_checks import batches, check_labels
from .distributed import barrier, setup_distributed, sum_over_ranks, teardown
from .interrupt import StopSignals, TrainingInterrupted, ignore_stop_signals, print_stop_notice
from .lock import RunLock
from .optim import LOSS_DESCRIPTIONS, lr_factor, param_groups, scale_loss
from .run_checkpoint import Progress, make_checkpoint, read_run_checkpoint, resumed_config
from .rundir import BEST_NAME, CHECKPOINT_NAME, CONFIG_NAME, RunLog, clean_run_dir
from .sampling import TAG_DROPOUT, TAG_INIT, IterationBatchSampler, TrainSamples, mix_seed

__all__ = ["Trainer", "resume", "train"]

OnIteration = Callable[[int, float], None]


def _load_datasets(cfg: TrainConfig) -> Tuple[SegmentationDataset, Optional[SegmentationDataset]]:
    """(training split, validation split or None when the run never validates), with the inputs and
    label sets the model takes."""
    if not Path(cfg.data).is_dir():
        raise TrainingError(f"data directory not found: {cfg.data}")
    layout = model_layout(cfg.model)
    options = dict(modalities=layout.modalities, labels=layout.labels, num_classes=cfg.num_classes)
    try:
        train_set = open_dataset(cfg.dataset, cfg.data, cfg.train_split, **options)
        val_set = open_dataset(cfg.dataset, cfg.data, cfg.val_split, **options) if cfg.val_every > 0 else None
    except (FileNotFoundError, ValueError) as exc:
        hint = " (pass --val-every 0 to train without validation)" if cfg.val_split in str(exc) and cfg.val_every else ""
        raise TrainingError(f"{exc}{hint}") from exc
    for dataset in (train_set, val_set):
        if dataset is not None:
            check_labels(dataset)
    return train_set, val_set


def _set_dropout(model: nn.Module, p: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p


class Trainer:
    """One training run described by a :class:`TrainConfig`.

    Construction does all the setup, so a bad setup fails before any step: it joins the process
    group (under torchrun), reads the run's checkpoint when ``config.resume`` (or takes
    ``checkpoint``, already read by :func:`read_run_checkpoint`), loads the splits, builds the
    model, optimizer and GradScaler and restores their state; then (rank 0) it takes the run
    directory's lock, creating the directory. It raises TrainingError naming the problem (and
    leaves no process group, lock or new directory behind).

    :meth:`run` (once) trains to ``config.iterations`` and returns a summary dict: ``iteration``,
    ``start_iteration``, ``losses`` (``[(iteration, loss)]`` of this process's steps; global-batch
    losses, identical on every rank), ``best_mean_iu``, ``best_iteration``, ``metrics`` (last
    validation), ``out``, ``world_size``, ``global_batch``, ``device``.
    ``on_iteration(iteration, loss)`` is called after every step. On SIGINT/SIGTERM it saves a
    checkpoint after the current step and raises :class:`~.interrupt.TrainingInterrupted`.
    """

    def __init__(self, config: TrainConfig, *, checkpoint: Optional[Mapping[str, Any]] = None,
                 on_iteration: Optional[OnIteration] = None) -> None:
        if checkpoint is not None and not config.resume:
            raise ValueError("Trainer: a checkpoint to resume from was given but config.resume is False")
        self.config = config
        self.on_iteration = on_iteration
        self.out = Path(config.out)
        self._bar: Optional[Any] = None  # tqdm bar while run() loops (rank 0, on a terminal)
        self._lock: Optional[RunLock] = None  # rank 0 holds the run directory's lock
        self._stop = StopSignals(print_stop_notice)
        self.dist, self.device = setup_distributed(config.device)
        self.global_batch = config.batch_size * self.dist.world_size
        try:
            if config.amp == "fp16" and self.device.type != "cuda":
                raise TrainingError("--amp fp16 needs a CUDA device (use --amp bf16 on the CPU)")
            if config.resume and checkpoint is None:
                checkpoint = read_run_checkpoint(config.out)
            self._check_run_dir(checkpoint)
            self.train_set, self.val_set = _load_datasets(config)
            self.head_backend = self._head_backend()
            model = self._build_model(checkpoint)
            groups = param_groups(model, config.lr, config.weight_decay, bias_lr_mult=config.bias_lr_mult,
                                  bias_weight_decay=config.bias_weight_decay)
            self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
            self.scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None
            self.progress = self._restore(checkpoint) if checkpoint is not None else Progress()
            self.model = self._distribute(model)
            self._take_run_dir(checkpoint)
        except BaseException:
            self._release_run_dir()
            teardown(self.dist)
            raise

    # -- setup ---------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        if self.dist.is_main and not self.config.quiet:
            if self._bar is not None:
                self._bar.write(message)
            else:
                print(message, flush=True)

    def _check_run_dir(self, checkpoint: Optional[Mapping[str, Any]]) -> None:
        path = self.out / CHECKPOINT_NAME
        if checkpoint is None and path.exists():
            raise TrainingError(f"{self.out} already holds a run ({path}); pass --resume to continue it, "
                                f"or choose another --out")
        arch = lookup_model_name(checkpoint.get("arch", self.config.model)) if checkpoint is not None else None
        if checkpoint is not None and arch != self.config.model:
            raise TrainingError(f"--resume: {path} holds a {checkpoint.get('arch')} run, not {self.config.model}")

    def _take_run_dir(self, checkpoint: Optional[Mapping[str, Any]]) -> None:
        """Rank 0: create the run directory, take its lock, clear temp files a killed write left;
        every rank learns whether that worked, so none waits for a rank that gave up."""
        error: Optional[TrainingError] = None
        if self.dist.is_main:
            created = not self.out.exists()
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                self._lock = RunLock(self.out).acquire()
                self._check_run_dir(checkpoint)  # again: another run may have written it meanwhile
                clean_run_dir(self.out)
            except (OSError, TrainingError) as exc:
                error = exc if isinstance(exc, TrainingError) else TrainingError(
                    f"cannot create run directory {self.out}: {os_error_problem(exc)}")
                self._release_run_dir()
                if created:
                    with contextlib.suppress(OSError):
                        self.out.rmdir()  # only while empty: what this failed start created
            if self._lock is not None and self._lock.took_over:
                self._say(f"note: took over the lock of pid {self._lock.took_over.get('pid')}, which is gone")
        failed = sum_over_ranks(torch.tensor([float(error is not None)], device=self.device), self.dist)
        if error is not None:
            raise error
        if failed.item() > 0:
            raise TrainingError(f"rank 0 could not take run directory {self.out}")

    def _release_run_dir(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _head_backend(self) -> str:
        from ..backends import resolve_backend

        try:
            return resolve_backend(self.config.backend, self.device, torch.float32)
        except (RuntimeError, ValueError) as exc:
            raise TrainingError(str(exc)) from exc

    def _build_model(self, checkpoint: Optional[Mapping[str, Any]]) -> nn.Module:
        cfg = self.config
        torch.manual_seed(mix_seed(cfg.seed, TAG_INIT))  # identical initialisation on every rank
        model = build_model(cfg.model, cfg.num_classes, cfg.backend)
        if cfg.dropout is not None:
            _set_dropout(model, cfg.dropout)
        try:
            if checkpoint is not None:
                load_weights(model, checkpoint["model_state_dict"])
            elif cfg.init:
                vgg16_init(model, cfg.init)
            elif cfg.weights:
                load_weights(model, cfg.weights)
        except (FileNotFoundError, ValueError, TypeError) as exc:
            source = "checkpoint" if checkpoint is not None else ("--init" if cfg.init else "--weights")
            raise TrainingError(f"{source}: {exc}") from exc
        return model.to(self.device)

    def _restore(self, checkpoint: Mapping[str, Any]) -> Progress:
        """Load the optimizer (and scaler) state of ``checkpoint``; return its progress."""
        try:
            self.optimizer.load_state_dict(checkpoint["optim_state_dict"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise TrainingError(f"checkpoint optimizer state does not fit this run: {exc}") from exc
        if self.scaler is not None and "scaler_state_dict" in checkpoint:
            self.scaler.load_state_dict(checkpoint["scaler_state_dict"])
        saved_batch = checkpoint.get("global_batch")
        if saved_batch not in (None, self.global_batch):
            self._say(f"warning: resuming with global batch {self.global_batch} (was {saved_batch}): "
                      f"the data order from here on differs from the original run's")
        return Progress.from_checkpoint(checkpoint)

    def _distribute(self, model: nn.Module) -> nn.Module:
        if not self.dist.enabled:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True)

    def _train_loader(self, start: int) -> torch.utils.data.DataLoader:
        cfg, D = self.config, self.dist
        transform = RandomFlipScale(flip=True, scales=cfg.augment_scales) if cfg.augment else None
        sampler = IterationBatchSampler(len(self.train_set), cfg.batch_size, start=start, stop=cfg.iterations,
                                        rank=D.rank, world_size=D.world_size, seed=cfg.seed)
        return torch.utils.data.DataLoader(
            TrainSamples(self.train_set, transform, cfg.seed), batch_sampler=sampler, collate_fn=pad_collate,
            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda", persistent_workers=False,
            worker_init_fn=ignore_stop_signals,
        )

    # -- one step ------------------------------------------------------------------------------

    def _step(self, images: Tensor, labels: Tensor, iteration: int) -> Tuple[Tensor, bool]:
        """One SGD step on this rank's slice: (the global-batch loss, a 0-dim tensor; whether any
        rank was asked to stop). A model with several outputs optimises the sum of their losses,
        each normalised on its own. The stop flags travel with the loss's sums, so every rank stops
        after the same step."""
        cfg = self.config
        torch.manual_seed(mix_seed(cfg.seed, TAG_DROPOUT, iteration, self.dist.rank))  # dropout masks
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with autocast(self.device, cfg.amp):
            outputs = run_model(self.model, images)
        targets = labels.unbind(1) if len(outputs) > 1 else (labels,)
        sums = [F.cross_entropy(out.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
                for out, target in zip(outputs, targets)]
        counts = [(target != IGNORE_INDEX).sum().to(sums[0].dtype) for target in targets]
        stop = torch.tensor(float(self._stop.requested), dtype=sums[0].dtype, device=sums[0].device)
        totals = sum_over_ranks(torch.stack([t.detach() for t in sums] + counts + [stop]), self.dist)
        loss = global_loss = 0
        for i, local_sum in enumerate(sums):
            task_loss, task_global = scale_loss(local_sum, totals[i], totals[len(sums) + i],
                                                world_size=self.dist.world_size, normalization=cfg.loss_normalization,
                                                global_batch=self.global_batch)
            loss, global_loss = loss + task_loss, global_loss + task_global
        # Zeroing in place keeps the ~0.5 GB of gradient buffers: no re-allocation (page faults on the CPU).
        self.optimizer.zero_grad(set_to_none=False)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return global_loss, bool(totals[-1] > 0)

    # -- after a step: validation, log, checkpoints --------------------------------------------

    def _validate(self) -> Dict[str, Any]:
        loader = eval_loader(self.val_set, rank=self.dist.rank, world_size=self.dist.world_size,
                             num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda",
                             worker_init_fn=ignore_stop_signals)
        return evaluate(self.model, loader, self.train_set.class_counts, self.device, amp=self.config.amp)

    def _track(self, iteration: int, metrics: Dict[str, Any]) -> bool:
        """Record a validation; True when its mean IU is the run's best so far."""
        P = self.progress
        P.metrics = metrics
        improved = math.isfinite(metrics["mean_iu"]) and (P.best_mean_iu is None or metrics["mean_iu"] > P.best_mean_iu)
        if improved:
            P.best_mean_iu, P.best_iteration = metrics["mean_iu"], iteration
        others = "".join(f"; {label}: pixel_acc {100 * m['pixel_acc']:.2f}  mean_iu {100 * m['mean_iu']:.2f}"
                         for label, m in list(metrics.get("tasks", {}).items())[1:])
        self._say(
            f"val @ {iteration}: pixel_acc {100 * metrics['pixel_acc']:.2f}  mean_acc "
            f"{100 * metrics['mean_acc']:.2f}  mean_iu {100 * metrics['mean_iu']:.2f}  fw_iu "
            f"{100 * metrics['fw_iu']:.2f}{others}  (best mean_iu {100 * (P.best_mean_iu or 0):.2f} "
            f"@ {P.best_iteration})"
        )
        return improved

    def _log_row(self, iteration: int, lr: float, rate: float,
                 metrics: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        """The log row due after ``iteration`` (None if none is): loss averaged since the last row."""
        cfg, P = self.config, self.progress
        if metrics is None and iteration % cfg.log_every != 0 and iteration != cfg.iterations:
            return None
        record = {"iteration": iteration, "loss": P.window_sum / max(P.window_count, 1), "lr": lr,
                  "images_per_s": round(rate, 3), "elapsed_s": round(P.elapsed_s, 3)}
        P.window_sum, P.window_count = 0.0, 0
        if metrics is not None:
            record.update({k: metrics[k] for k in METRIC_NAMES})
            record["iu"] = metrics["iu"]
            if len(metrics.get("tasks", {})) > 1:  # log.jsonl keeps every output's scores
                record["tasks"] = {label: {k: m[k] for k in (*METRIC_NAMES, "iu")} for label, m in metrics["tasks"].items()}
        return record

    def _save(self, iteration: int, improved: bool, stopping: bool = False) -> None:
        cfg = self.config
        latest_due = (stopping or (cfg.checkpoint_every > 0 and iteration % cfg.checkpoint_every == 0)
                      or iteration == cfg.iterations)
        if not self.dist.is_main or not (latest_due or improved):
            return
        targets = ([self.out / CHECKPOINT_NAME] if latest_due else []) + ([self.out / BEST_NAME] if improved else [])
        ckpt = make_checkpoint(
            cfg, self.progress, model_state=unwrap_model(self.model).state_dict(),
            optim_state=self.optimizer.state_dict(),
            scaler_state=self.scaler.state_dict() if self.scaler is not None else None,
            world_size=self.dist.world_size, global_batch=self.global_batch,
        )
        save_checkpoint(ckpt, targets[0], *targets[1:])

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> Dict[str, Any]:
        """Train to ``config.iterations`` (see the class docstring); call once."""
        try:
            with self._stop:
                return self._train()
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._release_run_dir()
            teardown(self.dist)

    def _start_files(self, start: int) -> Optional[RunLog]:
        """Rank 0: open the run log and write config.json; None on the other ranks."""
        cfg, D = self.config, self.dist
        if not D.is_main:
            return None
        log = RunLog(self.out, resume_from=start if cfg.resume else None)
        info = {**cfg.to_dict(), "world_size": D.world_size, "global_batch": self.global_batch,
                "device": str(self.device)}
        atomic_write_text(self.out / CONFIG_NAME, json.dumps(info, indent=2) + "\n")
        return log

    def _train(self) -> Dict[str, Any]:
        cfg, D, P = self.config, self.dist, self.progress
        start = P.iteration
        if start >= cfg.iterations:
            self._say(f"{self.out / CHECKPOINT_NAME} is at iteration {start} >= --iterations {cfg.iterations}: "
                      f"nothing to do")
            return self._summary(start, [])
        self._say(
            f"train {cfg.model} ({cfg.preset} preset) on {self.device}, heads on {self.head_backend}: "
            f"{D.world_size} process(es) x batch {cfg.batch_size} = {self.global_batch} images/step, "
            f"lr {cfg.lr:g} {cfg.lr_policy}, momentum {cfg.momentum:g}, wd {cfg.weight_decay:g}, "
            f"loss {LOSS_DESCRIPTIONS[cfg.loss_normalization]}, iterations {start}->{cfg.iterations}"
            + (f", amp {cfg.amp}" if cfg.amp else "")
        )
        self.model.train()
        loader = self._train_loader(start)
        log = self._start_files(start)

        from tqdm import tqdm

        if D.is_main and not cfg.quiet and sys.stderr.isatty():
            self._bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {cfg.model}", unit="it",
                             dynamic_ncols=True)
        losses: List[Tuple[int, float]] = []
        # elapsed_s counts training time over every session of the run: this one adds to the checkpoint's.
        session_start, elapsed_before = time.perf_counter(), P.elapsed_s
        rate: Optional[float] = None
        train_batches = batches(loader)
        try:
            t_prev = time.perf_counter()
            for images, labels, _ in train_batches:
                step = P.iteration  # 0-based index of this step
                factor = lr_factor(cfg.lr_policy, step, cfg.iterations, cfg.poly_power)
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * group.get("lr_mult", 1.0) * factor
                loss_t, stopping = self._step(images, labels, step)
                loss = float(loss_t)
                iteration = step + 1
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"loss is {loss} at iteration {iteration} (lr {cfg.lr * factor:g}); lower --lr"
                        + (" or use --amp bf16" if cfg.amp == "fp16" else "")
                    )
                ips = self.global_batch / max(time.perf_counter() - t_prev, 1e-9)
                rate = ips if rate is None else 0.9 * rate + 0.1 * ips
                P.iteration = iteration
                P.window_sum += loss
                P.window_count += 1
                losses.append((iteration, loss))
                if self.on_iteration is not None:
                    self.on_iteration(iteration, loss)
                if self._bar is not None:
                    self._bar.update(1)
                    self._bar.set_postfix(loss=f"{loss:.4g}", img_s=f"{rate:.1f}", refresh=False)

                validate = cfg.val_every > 0 and (iteration % cfg.val_every == 0 or iteration == cfg.iterations)
                metrics = self._validate() if validate else None
                P.elapsed_s = elapsed_before + (time.perf_counter() - session_start)
                record = self._log_row(iteration, cfg.lr * factor, rate, metrics)
                improved = self._track(iteration, metrics) if metrics is not None else False
                if log is not None and record is not None:
                    log.write(record)
                    if self._bar is None and not cfg.quiet and metrics is None:
                        print(f"iter {iteration}/{cfg.iterations}  loss {record['loss']:.6g}  lr {record['lr']:.3g}"
                              f"  {rate:.2f} img/s", flush=True)
                self._save(iteration, improved, stopping)
                if stopping:
                    raise TrainingInterrupted(self._stop.signum or signal.SIGTERM, iteration, self.out / CHECKPOINT_NAME)
                t_prev = time.perf_counter()
        finally:
            train_batches.close()  # the loader's workers stop now, also when a step raised
            if log is not None:
                log.close()
        barrier(D)
        return self._summary(start, losses)

    def _summary(self, start: int, losses: List[Tuple[int, float]]) -> Dict[str, Any]:
        P = self.progress
        return {
            "iteration": P.iteration, "start_iteration": start, "losses": losses,
            "best_mean_iu": P.best_mean_iu, "best_iteration": P.best_iteration, "metrics": P.metrics,
            "out": str(self.config.out), "world_size": self.dist.world_size, "global_batch": self.global_batch,
            "device": str(self.device),
        }


def train(config: TrainConfig, **kwargs: Any) -> Dict[str, Any]:
    """Run :class:`Trainer` for ``config`` (keyword arguments go to it); returns its summary."""
    return Trainer(config, **kwargs).run()


def resume(out: os.PathLike, overrides: Mapping[str, Any], **kwargs: Any) -> Dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint, read once: its config with ``overrides``
    on top (:func:`resumed_config`; give at least ``data``). Keyword arguments go to
    :class:`Trainer`. Returns the summary of :meth:`Trainer.run`; raises TrainingError."""
    checkpoint = read_run_checkpoint(out)
    config = resumed_config(checkpoint, {**overrides, "out": str(out)})
    trainer = Trainer(config, checkpoint=checkpoint, **kwargs)
    del checkpoint  # the trainer holds what it needs; the rest (~the model's size) is freed before training
    return trainer.run()
