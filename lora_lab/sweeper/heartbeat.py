"""The sweeper's heartbeat for its running trials: how other workers tell a live worker from a dead one.

Optuna's own heartbeat thread runs inside Study.optimize, one trial at a time; the sweeper asks
and tells by hand with a batch of trials in flight, so it beats for the batch itself.

It beats from a child process, not a thread. The sweeper runs its trials' jobs in its own
process (Hydra's basic launcher), so a thread would need the GIL to beat, and a job holds the GIL
for as long as a C extension's import or a long C call takes; on a loaded machine that ran past a
10 s grace period, another worker took the live trial for dead, and its params trained twice. A
child process has its own interpreter: it beats as long as the machine schedules it at all.

The child also says when a trial it beats for was failed by another worker's stale check (a false
verdict: this worker is alive). It sets the study user attr `alive_attr(number)` to the time on
each beat, so that the trial's retry waits on this worker's result instead of training the params
again (sweeper._retry_is_needed); the result comes through `late_outcome_attr(number)`.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import time
from types import TracebackType

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from lora_lab.sweeper.storage import ERROR_ATTR, open_storage

log = logging.getLogger(__name__)


def alive_attr(number: int) -> str:
    """Study user attr: trial `number` was failed as stale, but its worker still beats (a time.time())."""
    return f"lora_lab:alive:{number}"


def late_outcome_attr(number: int) -> str:
    """Study user attr: what trial `number` found after it was failed as stale ({"state", "values", "job_dir"})."""
    return f"lora_lab:late_outcome:{number}"


class Heartbeat:
    """Records a heartbeat for every tracked trial each `interval` s, from a child process."""

    def __init__(self, storage: BaseHeartbeat, url: str, interval: int):
        self.storage, self.url, self.interval = storage, url, interval
        self._child: subprocess.Popen | None = None

    def track(self, trials: list[optuna.Trial]) -> None:
        """Start beating for these trials, with a first beat now: a trial without any heartbeat
        never counts as stale, so a crash right after asking must still leave one."""
        for trial in trials:
            self.storage.record_heartbeat(trial._trial_id)  # Optuna keeps the storage id private
        self._send([f"track {t._trial_id} {t.number} {t.study._study_id}" for t in trials])

    def untrack(self, trials: list[optuna.Trial]) -> None:
        self._send([f"untrack {t._trial_id}" for t in trials])

    def _send(self, lines: list[str]) -> None:
        assert self._child is not None and self._child.stdin is not None, "use Heartbeat as a context manager"
        if self._child.poll() is not None:
            raise RuntimeError(f"the heartbeat process exited with code {self._child.returncode}; see the log above")
        self._child.stdin.write("".join(line + "\n" for line in lines))
        self._child.stdin.flush()

    def __enter__(self) -> Heartbeat:
        # The child inherits the environment (PGPASSWORD) and stderr (its warnings reach the log).
        command = [sys.executable, "-m", "lora_lab.sweeper.heartbeat", self.url, str(self.interval)]
        self._child = subprocess.Popen(command, stdin=subprocess.PIPE, text=True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._child is not None and self._child.stdin is not None
        self._child.stdin.close()  # end of input: the child stops
        try:
            self._child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


def beat(storage: BaseHeartbeat, tracked: dict[int, tuple[int, int]]) -> None:
    """One heartbeat for each tracked trial (storage id -> number, study id); mark the ones failed as stale."""
    for trial_id, (number, study_id) in tracked.items():
        try:
            storage.record_heartbeat(trial_id)
            trial = storage.get_trial(trial_id)
            if trial.state == TrialState.FAIL and ERROR_ATTR not in trial.user_attrs:
                # Only a stale check fails a trial without an error: another worker took us for dead.
                storage.set_study_user_attr(study_id, alive_attr(number), time.time())
        except Exception as err:  # a missed beat is survivable; say so and beat again
            log.warning("Heartbeat for trial %d not recorded (%s); next try in the next beat.", number, err)


def run_child(url: str, interval: int) -> None:
    """The child's loop: read `track <id> <number>` / `untrack <id>` lines from stdin, beat every
    `interval` s, and stop at the end of stdin (the sweeper closed it, or died)."""
    storage = open_storage(url)
    tracked: dict[int, tuple[int, int]] = {}
    pending = b""  # an incomplete line; os.read, not sys.stdin: a buffered reader hides lines from select
    next_beat = time.monotonic() + interval
    while True:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], max(0.0, next_beat - time.monotonic()))
        if ready:
            chunk = os.read(sys.stdin.fileno(), 65536)
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                verb, trial_id, *ids = line.decode().split()
                if verb == "track":
                    tracked[int(trial_id)] = (int(ids[0]), int(ids[1]))
                else:
                    tracked.pop(int(trial_id), None)
        if time.monotonic() >= next_beat:
            beat(storage, tracked)  # type: ignore[arg-type]  # open_storage gives a heartbeat storage
            next_beat = time.monotonic() + interval


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="[heartbeat] %(levelname)s %(message)s")
    run_child(sys.argv[1], int(sys.argv[2]))
