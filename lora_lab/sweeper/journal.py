"""A study in an append-only journal file (`journal:///abs/path/optuna.journal`): several sweep
workers on one node share it with no database server.

Optuna's JournalStorage has no heartbeat (only RDBStorage implements BaseHeartbeat), so a dead
worker's trial would stay RUNNING forever. This subclass adds one: each beat is a trial system
attr holding the worker's wall clock, appended to the journal like any other write. That clock is
the node's clock for every worker, because a journal file serves one node (its file lock is not
safe on NFS). optuna.storages.fail_stale_trials then works on it exactly as on an RDB.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

JOURNAL_SCHEME = "journal"
HEARTBEAT_ATTR = "lora_lab:heartbeat"  # trial system attr: time.time() of the last beat


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """JournalStorage on a file, with heartbeats recorded in the journal itself."""

    def __init__(
        self,
        path: str,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        on_stale_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ):
        super().__init__(JournalFileBackend(path))
        self.path = path
        self.heartbeat_interval, self.grace_period, self.on_stale_trial = (
            heartbeat_interval,
            grace_period,
            on_stale_trial,
        )

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            pass  # told between two beats: a finished trial needs no heartbeat

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # As RDBStorage: a trial that never beat is never stale, one whose last beat is older than
        # the grace period is (without a grace period, set only by a sweeper, nothing is).
        if self.grace_period is None:
            return []
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [
            t._trial_id
            for t in running
            if HEARTBEAT_ATTR in t.system_attrs and now - float(t.system_attrs[HEARTBEAT_ATTR]) > self.grace_period
        ]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.on_stale_trial
