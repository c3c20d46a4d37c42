"""Callbacks the auto search gives its gradient jobs.

callbacks.auto_cut: set by the auto search beside trainer.max_time on every gradient job it launches.

Lightning's Timer (trainer.max_time) stops training after the batch where the time runs out, and
Lightning validates there only in an epoch that validates anyway. The size rule validates a small
training set every n epochs (callbacks/min_steps.py): a cut between two of those would end the fit
with no validation, so no best epoch, no val/acc_best, and a failed job. This callback makes that
last batch a validation point: the cut job validates, keeps its best epoch, tests it and saves it.
metrics.json's `train/cut_at_step` says a job was cut (and where); the search records it as cut.

The job imports nothing of the search: Hydra instantiates this class by name from the job's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Checkpoint, Timer

from lora_lab.job.checkpointing import RESUME_CHECKPOINT  # the path resume=true reads
from lora_lab.job.dir import PAUSED_KEY


class ValidateAtCut(pl.Callback):
    """When trainer.max_time is reached, stop after this batch and validate there."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is None or self.results:
            return
        remaining = timer.time_remaining("train")
        if remaining is None or remaining > 0:
            return
        # The Timer sets should_stop on this same hook (before or after us); validation then runs
        # this batch if the epoch is a validation epoch, which every epoch now is.
        trainer.should_stop = True
        trainer.check_val_every_n_epoch = 1
        self.results = {
            "train/cut_at_step": trainer.global_step,
            "train/cut_at_epoch": trainer.current_epoch,
            "train/cut_after_s": timer.time_elapsed("train"),
        }


class PauseAtEpoch(Checkpoint):
    """callbacks.auto_pause: end training after `epochs` epochs (at the first validated epoch from there)
    and save the whole training state to checkpoints/last.ckpt, so the next rung continues this very
    run with resume=true instead of training it again from the start.

    Lightning validates an epoch before its on_train_epoch_end hooks and resumes a state saved there
    at the next epoch (FitLoop.restarted_on_epoch_end). A Checkpoint subclass, so Lightning runs it
    after ModelCheckpoint and EarlyStopping: when validation runs every epoch, ModelCheckpoint records
    the epoch's score (and EarlyStopping its verdict) in on_train_epoch_end too, and the saved state
    must hold them. A job whose schedule ends at or before `epochs` just finishes.
    """

    def __init__(self, epochs: int) -> None:
        self.epochs = int(epochs)
        self.results: dict[str, Any] = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        done = trainer.current_epoch + 1
        if self.results or trainer.should_stop or done < self.epochs or done >= (trainer.max_epochs or 0):
            return
        if done % (trainer.check_val_every_n_epoch or 1):  # not validated: no best epoch to keep yet
            return
        trainer.save_checkpoint(Path(trainer.default_root_dir) / RESUME_CHECKPOINT)
        trainer.should_stop = True
        self.results = {PAUSED_KEY: done}
