"""The job side of pruning: report the validation metric to the trial, stop when the pruner says so.

The job may run in the sweeper's process, in a joblib worker or on a SLURM node: it re-attaches to
its trial through the study's storage (cfg.trial, set by the sweeper), never through memory.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl

from lora_lab.sweeper.storage import PRUNED_AT_ATTR, attach_trial

log = logging.getLogger(__name__)


class OptunaPruning(pl.Callback):
    """After each validation during fit: trial.report(metric, step); if trial.should_prune(), stop.

    `step` counts validations (0, 1, ...): the epoch, with the default one validation per epoch.
    A pruned job is not aborted: it leaves fit like an early stop, then tests its best epoch and
    saves, so the evidence of why it lost stays on disk. results["trial/pruned_at"] tells train().
    """

    def __init__(self, storage: str, study_name: str, number: int, monitor: str):
        # Set by the sweeper as callbacks.optuna_pruning.* overrides of the trial's job (sweeper.py).
        self.storage, self.study_name, self.number, self.monitor = storage, study_name, number, monitor
        self.results: dict[str, Any] = {"trial/number": number, "trial/pruned_at": None}
        self._step = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trial = attach_trial(self.storage, self.study_name, self.number) if trainer.is_global_zero else None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        step, self._step = self._step, self._step + 1
        prune = False
        if trainer.is_global_zero:
            prune = self._report(trainer, step)
        # Under DDP only rank 0 talks to the storage; every rank must stop together.
        if trainer.strategy.broadcast(prune):
            trainer.should_stop = True
            self.results["trial/pruned_at"] = step

    def _report(self, trainer: pl.Trainer, step: int) -> bool:
        if self.monitor not in trainer.callback_metrics:
            raise KeyError(
                f"optimized_metric={self.monitor} is not logged during validation, so the trial cannot report it "
                f"(logged: {sorted(trainer.callback_metrics)}). Optimise a validation metric such as val/acc_best "
                "(selecting on test metrics leaks the test set into the choice)."
            )
        self._trial.report(float(trainer.callback_metrics[self.monitor]), step)
        if not self._trial.should_prune():
            return False
        log.info("Optuna trial %d pruned after validation step %d: stopping training.", self.number, step)
        self._trial.set_user_attr(PRUNED_AT_ATTR, step)
        return True
