"""The study's trials, counted the way the sweep budget and the failure rate need them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lora_lab.sweeper.storage import ERROR_ATTR, JOB_DIR_ATTR, RETRY_OF_ATTR


@dataclass
class Ledger:
    trials: list[FrozenTrial]

    def _counts(self, trial: FrozenTrial) -> bool:
        """Does `trial` use one of the n_trials: finished or running. A FAIL counts when the
        sweeper recorded why (ERROR_ATTR), or when it was a retry already (a second death is
        final, recovery.py). A first attempt whose worker died, failed by the heartbeat check,
        does not (its retry, or the twin that took its params over, does), nor does a surplus ask."""
        if trial.state == TrialState.FAIL:
            return ERROR_ATTR in trial.user_attrs or RETRY_OF_ATTR in trial.user_attrs
        return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)

    @property
    def used(self) -> int:
        """Trials that count toward n_trials; WAITING retries count once a worker asks for them."""
        return sum(self._counts(t) for t in self.trials)

    def is_surplus(self, number: int, n_trials: int) -> bool:
        """Was trial `number` asked after the budget was spent? Workers check the budget, then ask:
        two of them can both see one slot left and both ask. The storage numbers trials in order,
        so the later number gives way. A WAITING retry below it will run, so it counts. A trial
        below it that is itself surplus but not yet marked changes nothing: it is surplus only if the
        trials below it fill the budget, and then they fill it for `number` as well."""
        before = sum(self._counts(t) or t.state == TrialState.WAITING for t in self.trials if t.number < number)
        return before >= n_trials

    def running(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.RUNNING]

    def complete_with(self, params: Mapping[str, Any]) -> FrozenTrial | None:
        """The first COMPLETE trial that ran exactly these params, if any."""
        return next((t for t in self.trials if t.state == TrialState.COMPLETE and t.params == dict(params)), None)

    def holder_of(self, trial: optuna.Trial | FrozenTrial) -> FrozenTrial | None:
        """The RUNNING trial that trains `trial`'s params instead of it, if any: one that claimed its
        job dir (it trains already), else the lowest-numbered one below `trial`.

        Every worker decides from a read taken after its own ask, once the trials below it hold
        their params (OptunaSweeper._settled_ledger). Of two twins asked at once, the higher one then
        sees the lower one and waits on it, and the lower one trains: the same verdict in both
        workers. A claimed twin can be numbered higher: a retry is numbered when it is enqueued."""
        if JOB_DIR_ATTR in trial.user_attrs:
            return None  # it claimed its job dir: it trains
        twins = [
            t
            for t in self.trials
            if t.state == TrialState.RUNNING and t.number != trial.number and t.params == trial.params
        ]
        claimed = [t for t in twins if JOB_DIR_ATTR in t.user_attrs]
        return min(claimed or [t for t in twins if t.number < trial.number], key=lambda t: t.number, default=None)

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)
