"""The job side of pruning: report the validation metric to the trial, stop when the pruner says so.

The job may run in the sweeper's process, in a joblib worker or on a SLURM node: it re-attaches to
its trial through the study's storage (cfg.trial, set by the sweeper), never through memory.

One objective (OptunaPruning): trial.report(metric, step), then the configured Optuna pruner decides.

Several objectives (hydra.sweeper.objectives, FirstObjectivePruning): Optuna refuses trial.report and
trial.should_prune there, so lora_lab prunes by its own median rule on the FIRST objective:
- after validation step s (0, 1, ...: the epoch, by default) the job stores the first objective's
  value as its trial's user attr `intermediate/<s>`;
- it is pruned when at least `n_startup_trials` COMPLETE trials stored a value at step s and its
  value is worse than their median at step s (below it when the first objective is maximized, above
  it when minimized; equal is not worse; nan is worse than anything), and never at a step below
  `n_warmup_steps`. Both settings are hydra/sweeper/pruner=median's (5 and 1 by default);
  hydra/sweeper/pruner=nop stores the values and prunes nothing; other pruners are refused.
- The first objective must be logged at each validation (a val/ metric such as val/acc_best): for
  any other (latency, sizes) the sweeper warns once and no trial of the study is pruned.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from optuna.trial import TrialState

from lora_lab.sweeper.objectives import median_rule_settings
from lora_lab.sweeper.storage import (
    INTERMEDIATE_ATTR_PREFIX,
    OBJECTIVES_ATTR,
    PRUNED_AT_ATTR,
    PRUNER_ATTR,
    attach_trial,
)

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
        self._trial.report(_logged(trainer, self.monitor, f"optimized_metric={self.monitor}"), step)
        if not self._trial.should_prune():
            return False
        return self._pruned(step)

    def _pruned(self, step: int) -> bool:
        log.info("Optuna trial %d pruned after validation step %d: stopping training.", self.number, step)
        self._trial.set_user_attr(PRUNED_AT_ATTR, step)
        return True


class FirstObjectivePruning(OptunaPruning):
    """A study of several objectives: after each validation, store the first objective (`monitor`) as
    the trial's `intermediate/<step>` and stop when median_rule says so. The direction and the rule's
    settings come from the study's user attrs, as OptunaPruning's pruner does."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        if self._trial is not None:
            attrs = self._trial.study.user_attrs
            self._maximize = dict(attrs[OBJECTIVES_ATTR])[self.monitor] == "maximize"
            self._rule = median_rule_settings(attrs[PRUNER_ATTR])

    def _report(self, trainer: pl.Trainer, step: int) -> bool:
        value = _logged(trainer, self.monitor, f"the first of hydra.sweeper.objectives, {self.monitor},")
        self._trial.set_user_attr(f"{INTERMEDIATE_ATTR_PREFIX}{step}", value)
        if self._rule is None:
            return False  # hydra/sweeper/pruner=nop
        complete = self._trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not median_rule(value, step, [intermediates(t.user_attrs) for t in complete], self._maximize, **self._rule):
            return False
        return self._pruned(step)


def median_rule(
    value: float,
    step: int,
    completed: Sequence[Mapping[int, float]],
    maximize: bool,
    n_startup_trials: int = 5,
    n_warmup_steps: int = 0,
) -> bool:
    """Prune a trial whose first objective is `value` at validation `step`? `completed`: each COMPLETE
    trial's first objective by step. True when step >= n_warmup_steps, at least n_startup_trials
    (and one) of them have a value at `step`, and `value` is worse than their median (nan: worst)."""
    if step < n_warmup_steps:
        return False
    at_step = [c[step] for c in completed if step in c and not math.isnan(c[step])]
    if len(at_step) < max(n_startup_trials, 1):
        return False
    if math.isnan(value):
        return True
    median = statistics.median(at_step)
    return value < median if maximize else value > median


def intermediates(user_attrs: Mapping[str, Any]) -> dict[int, float]:
    """A trial's stored first-objective values by step (its `intermediate/<step>` user attrs)."""
    return {
        int(key[len(INTERMEDIATE_ATTR_PREFIX) :]): float(value)
        for key, value in user_attrs.items()
        if key.startswith(INTERMEDIATE_ATTR_PREFIX)
    }


def _logged(trainer: pl.Trainer, monitor: str, setting: str) -> float:
    """The monitored metric of this validation; a KeyError naming the setting when it is not logged."""
    if monitor not in trainer.callback_metrics:
        raise KeyError(
            f"{setting} is not logged during validation, so the trial cannot report it "
            f"(logged: {sorted(trainer.callback_metrics)}). Optimise a validation metric such as val/acc_best "
            "(selecting on test metrics leaks the test set into the choice)."
        )
    return float(trainer.callback_metrics[monitor])
