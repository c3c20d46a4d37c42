"""A trial left RUNNING by a dead worker (killed, crashed, preempted): failed, and its params retried."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from lora_lab.job.record import fail_abandoned
from lora_lab.sweeper.storage import JOB_DIR_ATTR, RETRY_OF_ATTR

log = logging.getLogger(__name__)
# A trial whose params kill their worker twice (e.g. the OOM killer) is a failure, not bad luck.
MAX_RETRIES = 1


def retry_abandoned_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's heartbeat-stale callback: Optuna has set the trial FAIL; fix its job's status.json
    and enqueue the same params, which the next worker to ask runs as a new trial in a new dir."""
    twin = next(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.params == trial.params), None
    )
    if twin is not None:
        # A live worker waits on these params (sweeper._await_twin) and runs them itself once it
        # sees this trial failed without an error: a retry as well would train them twice.
        outcome = f"trial {twin.number}, which was waiting on its params, runs them"
    elif _retry_chain_length(study, trial) >= MAX_RETRIES:
        outcome = "it was a retry already: failed for good, not retried"
    else:
        outcome = "its params were enqueued again"
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF_ATTR: trial.number})
    log.warning("Trial %d was left running by a dead worker: failed; %s.", trial.number, outcome)
    if job_dir := trial.user_attrs.get(JOB_DIR_ATTR):
        # The dead job's status.json still says running; a retry with the same config would take it
        # for a live original and record itself as its duplicate.
        fail_abandoned(Path(job_dir), f"its sweep worker died; Optuna trial {trial.number} failed and {outcome}")


def _retry_chain_length(study: optuna.Study, trial: FrozenTrial) -> int:
    """How many retries led to this trial (0 for a first attempt)."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    length = 0
    while RETRY_OF_ATTR in trial.user_attrs:
        length += 1
        trial = by_number[trial.user_attrs[RETRY_OF_ATTR]]
    return length
