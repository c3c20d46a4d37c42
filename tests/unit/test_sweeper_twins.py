"""Workers sharing a study never train one parameter set twice: twins asked at once, a trial read
while it is still being asked, and a live worker taken for dead (its retry takes its result)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from lora_lab.sweeper import sweeper as sweeper_module
from lora_lab.sweeper.heartbeat import Heartbeat, alive_attr, beat, late_outcome_attr
from lora_lab.sweeper.journal import HEARTBEAT_ATTR
from lora_lab.sweeper.ledger import Ledger
from lora_lab.sweeper.recovery import retry_abandoned_trial
from lora_lab.sweeper.storage import DUPLICATE_OF_ATTR, ERROR_ATTR, JOB_DIR_ATTR, RETRY_OF_ATTR, open_storage
from lora_lab.sweeper.sweeper import OptunaSweeper
from tests.services import wait_for

SPACE = {"rank": CategoricalDistribution([4, 8]), "lr": CategoricalDistribution([1e-3, 3e-3])}
P = {"rank": 8, "lr": 1e-3}

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _sweeper(grace_period: int = 2) -> OptunaSweeper:
    empty = OmegaConf.create({})
    return OptunaSweeper(
        params=empty,
        direction="maximize",
        n_trials=4,
        n_jobs=1,
        storage=None,
        study_name="s",
        sampler=empty,
        pruner=empty,
        max_failure_rate=0.0,
        heartbeat_interval=1,
        grace_period=grace_period,
    )


def _study(tmp_path: Path, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    storage = storage or open_storage(f"sqlite:///{tmp_path}/optuna.db")
    return optuna.create_study(storage=storage, study_name="s", direction="maximize", load_if_exists=True)


def _ask(study: optuna.Study, params: dict) -> optuna.Trial:
    study.enqueue_trial(params)
    return study.ask(SPACE)


def test_of_twins_asked_at_once_the_lower_trains_and_the_higher_waits_on_it(tmp_path: Path):
    # Two workers asked the same params before either looked: both reads come after both asks.
    worker_a, worker_b = _study(tmp_path), _study(tmp_path)
    lower, higher = _ask(worker_a, P), _ask(worker_b, P)
    other = _ask(worker_a, {"rank": 4, "lr": 1e-3})
    ledger = Ledger(worker_b.get_trials())
    assert ledger.holder_of(lower) is None
    assert ledger.holder_of(higher).number == lower.number
    assert ledger.holder_of(other) is None


def test_a_twin_that_claimed_its_job_dir_trains_whatever_its_number(tmp_path: Path):
    # A retry is numbered when it is enqueued: it can sit below a trial that started training meanwhile.
    study = _study(tmp_path)
    lower, higher = _ask(study, P), _ask(study, P)
    higher.set_user_attr(JOB_DIR_ATTR, str(tmp_path / str(higher.number)))
    ledger = Ledger(study.get_trials())
    assert ledger.holder_of(lower).number == higher.number
    assert ledger.holder_of(higher) is None


def test_the_decision_waits_until_a_trial_asked_earlier_holds_its_params(tmp_path: Path, monkeypatch):
    # Optuna numbers a trial first and stores its params after: trial 0 is half asked (no params yet).
    study = _study(tmp_path)
    storage = study._storage
    asking_id = storage.create_new_trial(study._study_id)
    mine = _ask(study, P)
    polls = []

    def finish_the_other_ask(seconds: float) -> None:
        # The sweeper polls while trial 0 has no params: that is when its worker stores them.
        polls.append(seconds)
        for name, value in P.items():
            storage.set_trial_param(asking_id, name, SPACE[name].to_internal_repr(value), SPACE[name])

    monkeypatch.setattr(sweeper_module.time, "sleep", finish_the_other_ask)
    ledger = _sweeper()._settled_ledger(study, mine)
    assert len(polls) == 1
    assert ledger.holder_of(mine).number == 0  # seen, so this trial waits instead of training P again


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_live_trial_taken_for_dead_gives_its_result_to_its_retry(tmp_path: Path):
    storage = open_storage(
        f"sqlite:///{tmp_path}/optuna.db", heartbeat_interval=1, grace_period=1, on_stale_trial=retry_abandoned_trial
    )
    study = _study(tmp_path, storage)
    sweeper = _sweeper()
    original = _ask(study, P)
    original.set_user_attr(JOB_DIR_ATTR, str(tmp_path / "0"))
    # Another worker's stale check: FAIL without an error, and the params enqueued again.
    storage.set_trial_state_values(original._trial_id, TrialState.FAIL)
    retry_abandoned_trial(study, storage.get_trial(original._trial_id))
    # This worker was alive: its job finishes, and Optuna refuses to record it on a failed trial.
    sweeper._finish(study, original, 0.75, TrialState.COMPLETE)
    assert study.user_attrs[late_outcome_attr(original.number)]["values"] == [0.75]
    assert sweeper._outcomes[original.number] is None  # not a failure of this run

    retry = study.ask(SPACE)
    assert retry.user_attrs[RETRY_OF_ATTR] == original.number
    assert not sweeper._retry_is_needed(study, retry)  # answered, not trained again
    answered = study._storage.get_trial(retry._trial_id)
    assert (answered.state, answered.value, answered.user_attrs[DUPLICATE_OF_ATTR]) == (
        TrialState.COMPLETE,
        0.75,
        original.number,
    )
    assert answered.user_attrs[JOB_DIR_ATTR] == str(tmp_path / "0")


def test_a_retry_runs_when_its_original_sends_no_sign_of_life(tmp_path: Path, monkeypatch):
    study = _study(tmp_path)
    study.enqueue_trial(P, user_attrs={RETRY_OF_ATTR: 0})
    retry = study.ask(SPACE)
    clock = iter(range(100))  # one tick per read: the grace period (2) runs out after two quiet polls
    monkeypatch.setattr(sweeper_module.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(sweeper_module.time, "sleep", lambda seconds: None)
    assert _sweeper(grace_period=2)._retry_is_needed(study, retry)


def test_a_retry_keeps_waiting_while_its_original_still_beats(tmp_path: Path, monkeypatch):
    study = _study(tmp_path)
    study.enqueue_trial(P, user_attrs={RETRY_OF_ATTR: 0})
    retry = study.ask(SPACE)
    clock = iter(range(1000))
    monkeypatch.setattr(sweeper_module.time, "monotonic", lambda: float(next(clock)))
    beats = iter(range(10))

    def a_beat_then_the_result(seconds: float) -> None:
        # Ten sign-of-life marks, each past the grace period alone, then the original's result.
        mark = next(beats, None)
        if mark is None:
            study.set_user_attr(late_outcome_attr(0), {"state": "PRUNED", "values": None, "job_dir": "d"})
        else:
            study.set_user_attr(alive_attr(0), mark)

    monkeypatch.setattr(sweeper_module.time, "sleep", a_beat_then_the_result)
    assert not _sweeper(grace_period=2)._retry_is_needed(study, retry)
    assert study._storage.get_trial(retry._trial_id).state == TrialState.PRUNED


def test_a_beat_marks_a_trial_alive_only_when_a_stale_check_failed_it(tmp_path: Path):
    study = _study(tmp_path)
    storage = study._storage
    stale, failed, done = _ask(study, P), _ask(study, {"rank": 4, "lr": 1e-3}), _ask(study, {"rank": 4, "lr": 3e-3})
    storage.set_trial_state_values(stale._trial_id, TrialState.FAIL)  # as a stale check does: no error
    failed.set_user_attr(ERROR_ATTR, "ConfigError: ...")
    storage.set_trial_state_values(failed._trial_id, TrialState.FAIL)
    study.tell(done, 0.5)
    beat(storage, {t._trial_id: (t.number, study._study_id) for t in (stale, failed, done)})
    marks = {key for key in study.user_attrs if key.startswith("lora_lab:alive:")}
    assert marks == {alive_attr(stale.number)}


def test_the_heartbeat_process_beats_for_tracked_trials_until_its_sweeper_closes_it(tmp_path: Path):
    # The beats come from a child process, out of reach of the sweeper's GIL (heartbeat.py).
    url = f"journal:///{tmp_path}/optuna.journal"
    storage = open_storage(url, heartbeat_interval=1, grace_period=3)
    study = _study(tmp_path, storage)
    trial = _ask(study, P)

    def last_beat() -> float:
        return storage.get_trial(trial._trial_id).system_attrs.get(HEARTBEAT_ATTR, 0.0)

    with Heartbeat(storage, url, interval=1) as heartbeat:
        heartbeat.track([trial])
        first = last_beat()
        assert first > 0  # the first beat is recorded before track() returns
        wait_for(lambda: last_beat() > first, timeout=120, what="a beat from the heartbeat process")
        heartbeat.untrack([trial])
        child = heartbeat._child
    assert child.returncode == 0  # it ended when the sweeper closed its input
