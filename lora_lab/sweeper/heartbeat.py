"""The sweeper's heartbeat for its running trials: how other workers tell a live worker from a dead one.

Optuna's own heartbeat thread runs inside Study.optimize, one trial at a time; the sweeper asks
and tells by hand with a batch of trials in flight, so it beats for the batch itself.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from optuna.storages._heartbeat import BaseHeartbeat

log = logging.getLogger(__name__)


class Heartbeat:
    """Records a heartbeat for every tracked trial each `interval` s, in a daemon thread."""

    def __init__(self, storage: BaseHeartbeat, interval: int):
        self.storage, self.interval = storage, interval
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lora_lab-heartbeat", daemon=True)

    def track(self, trial_ids: list[int]) -> None:
        """Start beating for these trials, with a first beat now: a trial without any heartbeat
        never counts as stale, so a crash right after asking must still leave one."""
        with self._lock:
            self._trial_ids.update(trial_ids)
        for trial_id in trial_ids:
            self.storage.record_heartbeat(trial_id)

    def untrack(self, trial_ids: list[int]) -> None:
        with self._lock:
            self._trial_ids.difference_update(trial_ids)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                trial_ids = list(self._trial_ids)
            for trial_id in trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # noqa: BLE001 - a missed beat is survivable; say so and beat again
                    log.warning("Heartbeat for trial id %d not recorded (%s); next try in %d s.", trial_id, err, self.interval)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
