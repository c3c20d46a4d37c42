"""The study's trials, counted the way the sweep budget and the failure rate need them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from lora_lab.sweeper.storage import RETRY_OF_ATTR


@dataclass
class Ledger:
    trials: list[FrozenTrial]

    @property
    def retried(self) -> set[int]:
        """Numbers of FAIL trials whose params were enqueued again (their worker died)."""
        return {t.user_attrs[RETRY_OF_ATTR] for t in self.trials if RETRY_OF_ATTR in t.user_attrs}

    @property
    def used(self) -> int:
        """Trials that count toward n_trials: finished or running. A dead worker's trial does not
        (its retry will), and WAITING retries count once a worker asks for them."""
        retried = self.retried
        return sum(
            t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            or (t.state == TrialState.FAIL and t.number not in retried)
            for t in self.trials
        )

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
