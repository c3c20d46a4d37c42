"""callbacks.min_train_steps: the size rule of the default job (docs/benchmarks.md, "Learning curves").

Three epochs are enough for a few thousand rows, not for 64: at batch 32 they are 6 optimizer
steps, and a LoRA that took 6 steps scores below the bag of words (FPB, 64 rows: 0.62 against
TF-IDF's 0.78). So a training set too small for `steps` optimizer steps in trainer.max_epochs epochs
is trained for the epochs that reach `steps` (64 rows at batch 32: 2 steps an epoch, 51 epochs),
validated about max_epochs times (every 17 epochs here) so model selection costs what it did. The
cost is bounded: about `steps` x batch_size examples, what a job of steps x batch_size / max_epochs
rows (about 1,070 at 100 steps of 32 over 3 epochs) costs anyway.
A training set that already gives `steps` steps is left exactly as it was.

It replaces the default epochs, not the user's: it stands aside when the command line sets
trainer.max_epochs (`epochs_set`, conf/callbacks/default.yaml) or bounds training otherwise
(trainer.max_steps, limit_train_batches other than 1.0), and for regimes that train no epochs.
steps=0 turns it off.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl

from lora_lab.config.validation import check_min_train_steps

log = logging.getLogger(__name__)


class MinTrainSteps(pl.Callback):
    """Raises max_epochs (and check_val_every_n_epoch with it) so training takes at least `steps` steps."""

    def __init__(self, steps: int = 100, epochs_set: bool = False) -> None:
        check_min_train_steps(steps)
        self.steps, self.epochs_set = steps, epochs_set
        self.results: dict[str, Any] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """After the datamodule's setup, before the optimizer and its schedule count the steps.
        `train/size_rule` in metrics.json (and the closing table) says what it decided and why."""
        if stage != "fit" or trainer.datamodule is None:
            return
        loop = trainer.fit_loop
        why = self._why_not(trainer)
        if why is not None:
            self.results = {"train/size_rule": f"{_epochs(loop.max_epochs)}, {why}"}
            return
        per_epoch = math.ceil(len(trainer.datamodule.train_dataloader()) / trainer.accumulate_grad_batches)
        epochs = loop.max_epochs
        self.results = {"train/steps_per_epoch": per_epoch}
        if epochs * per_epoch >= self.steps:
            self.results["train/size_rule"] = (
                f"{_epochs(epochs)}: {per_epoch} optimizer steps an epoch x {epochs} >= {self.steps}"
            )
            return
        # E epochs reach the steps; validating every v = ceil(E / epochs) of them keeps about the
        # planned rounds of validation, and rounding E up to a multiple of v validates the last one.
        needed = math.ceil(self.steps / per_epoch)
        every = math.ceil(needed / epochs)
        loop.max_epochs = every * math.ceil(needed / every)
        trainer.check_val_every_n_epoch = every  # a resumed job computes the same from the same rows
        self.results["train/size_rule"] = (
            f"{_epochs(loop.max_epochs)}, validated every {every}: {per_epoch} optimizer steps an epoch "
            f"x {_epochs(epochs)} < {self.steps}"
        )
        log.info("size rule: %s", self.results["train/size_rule"])

    def _why_not(self, trainer: pl.Trainer) -> str | None:
        """Why the rule leaves this job's epochs alone before counting its batches, or None."""
        if self.steps == 0:
            return "the size rule is off (callbacks.min_train_steps.steps=0)"
        if self.epochs_set:
            return "as trainer.max_epochs on the command line says"
        if trainer.max_steps != -1 or trainer.limit_train_batches != 1.0 or not trainer.fit_loop.max_epochs:
            return "bounded by trainer.max_steps or limit_train_batches"
        return None


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"
