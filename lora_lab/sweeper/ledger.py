"""The study's trials, counted the way the sweep budget and the failure rate need them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from lora_lab.sweeper.storage import ERROR_ATTR, RETRY_OF_ATTR


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

    def running_with(self, params: Mapping[str, Any]) -> FrozenTrial | None:
        """A RUNNING trial (another worker's) with exactly these params, if any."""
        return next((t for t in self.trials if t.state == TrialState.RUNNING and t.params == dict(params)), None)

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)
