"""The study side of the sweeper: storage URLs, resuming, a dead worker's trials, the budget."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from sqlalchemy.exc import ProgrammingError

from lora_lab.artifacts import read_json, write_json
from lora_lab.cli.hydra_callbacks import FinishedDirError, RefuseFinishedDirs
from lora_lab.job.dir import STATUS_FILE
from lora_lab.sweeper.config import PRUNERS, SAMPLERS
from lora_lab.sweeper.ledger import Ledger
from lora_lab.sweeper.recovery import retry_abandoned_trial
from lora_lab.sweeper.resume import SweepConfigError, check_sweep_dir, open_study, shifted_sampler
from lora_lab.sweeper.search_space import parse_search_space
from lora_lab.sweeper.storage import (
    ERROR_ATTR,
    JOB_DIR_ATTR,
    PRUNER_ATTR,
    RETRY_OF_ATTR,
    SURPLUS_ATTR,
    StorageError,
    open_storage,
    storage_url,
)
from tests.helpers import compose_train


def _open(url: str, x_high: float = 1.0, direction: str = "maximize") -> optuna.Study:
    """Open study "s" as the sweeper does for a search over x in [0, x_high], default sampler and pruner."""
    space = parse_search_space({"x": f"interval(0, {x_high})"}, [])
    signature = {**space.signature(), "optimized_metric": "val/acc_best"}
    return open_study(open_storage(url), "s", direction, signature, SAMPLERS["tpe"], PRUNERS["median"])


def test_default_storage_is_an_absolute_sqlite_file_in_the_sweep_dir(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage_url(None, Path("multirun/x")) == f"sqlite:///{tmp_path}/multirun/x/optuna.db"
    assert storage_url("postgresql://sweeper@db:5432/optuna", tmp_path) == "postgresql://sweeper@db:5432/optuna"


def test_a_password_in_the_storage_url_is_refused(tmp_path: Path):
    with pytest.raises(StorageError, match="PGPASSWORD"):
        storage_url("postgresql://sweeper:secret@db/optuna", tmp_path)


def _failing_first(monkeypatch: pytest.MonkeyPatch, failures: int, message: str) -> list[int]:
    """RDBStorage raising ProgrammingError(message) on its first `failures` builds; the build count."""
    real, calls = optuna.storages.RDBStorage, []

    def build(*args, **kwargs):
        calls.append(1)
        if len(calls) <= failures:
            raise ProgrammingError("CREATE TABLE studies", {}, Exception(message))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", build)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    return calls


def test_a_worker_that_lost_the_schema_race_opens_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # What PostgreSQL answers the loser when another worker just created the table (CI, 3 workers).
    calls = _failing_first(monkeypatch, 2, 'relation "studies" already exists')
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    assert len(calls) == 3 and storage.get_all_studies() == []


def test_a_role_that_may_not_create_tables_gets_a_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _failing_first(monkeypatch, 99, "permission denied for schema public")
    with pytest.raises(StorageError, match="permission denied for schema public.*database it owns"):
        open_storage(f"sqlite:///{tmp_path}/optuna.db")


def test_resuming_loads_the_study_and_does_not_replay_the_first_runs_draws(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = _open(url)
    first = study.ask({"x": FloatDistribution(0, 1)})
    study.tell(first, 0.5)
    resumed = _open(url)
    assert [t.number for t in resumed.trials] == [0]
    # Same seed, same study: without the seed shift TPE's random start would propose x again.
    assert resumed.ask({"x": FloatDistribution(0, 1)}).params["x"] != first.params["x"]
    assert resumed.user_attrs[PRUNER_ATTR] == PRUNERS["median"]  # what a job builds its pruner from


def test_workers_with_their_own_seeds_never_draw_alike_whenever_they_join():
    """A worker seeded 1 that joins a study of one trial must not replay what a worker seeded 2
    drew when it opened the study empty (a seed + offset shift made both seed 2)."""
    x = {"x": FloatDistribution(0, 1)}

    def first_draws(seed: int, offset: int) -> list[float]:
        study = optuna.create_study(sampler=shifted_sampler({**SAMPLERS["random"], "seed": seed}, offset))
        return [study.ask(x).params["x"] for _ in range(3)]

    assert first_draws(2, 0) == first_draws(2, 0), "seeded: the same command draws the same trials"
    draws = [first_draws(seed, offset) for seed, offset in [(2, 0), (1, 1), (1, 0), (2, 1), (3, 0), (1, 2)]]
    assert len({d[0] for d in draws}) == len(draws)


def test_resuming_with_another_search_or_direction_is_refused(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    _open(url)
    with pytest.raises(SweepConfigError, match="another search"):
        _open(url, x_high=2.0)
    with pytest.raises(SweepConfigError, match="direction"):
        _open(url, direction="minimize")


def test_a_sweep_dir_of_another_study_or_a_plain_multirun_is_refused(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    write_json(tmp_path / "study.json", {"storage": "sqlite:////elsewhere/optuna.db", "study_name": "s"})
    with pytest.raises(SweepConfigError, match="belongs to study"):
        check_sweep_dir(tmp_path, url, "s")
    (tmp_path / "study.json").unlink()
    write_json(tmp_path / "0" / STATUS_FILE, {"state": "complete"})
    with pytest.raises(SweepConfigError, match="not this Optuna sweep"):
        check_sweep_dir(tmp_path, url, "s")


def test_the_finished_dirs_guard_lets_only_the_optuna_sweeper_resume_into_a_sweep_dir(tmp_path: Path):
    write_json(tmp_path / "0" / STATUS_FILE, {"state": "complete"})
    overrides = [f"hydra.sweep.dir={tmp_path}"]
    RefuseFinishedDirs().on_multirun_start(compose_train(tmp_path, [*overrides, "hydra/sweeper=lora_lab_optuna"]))
    with pytest.raises(FinishedDirError, match="earlier multirun"):
        RefuseFinishedDirs().on_multirun_start(compose_train(tmp_path, overrides))


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning", "ignore:Heartbeat of storage")
def test_a_dead_workers_trial_is_failed_its_job_marked_and_its_params_retried_once(tmp_path: Path):
    # Heartbeats every 1 s, stale after 1 s without one (SQLite's clock ticks in whole seconds).
    storage = open_storage(
        f"sqlite:///{tmp_path}/optuna.db", heartbeat_interval=1, grace_period=1, on_stale_trial=retry_abandoned_trial
    )
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    space = {"x": FloatDistribution(0, 1)}
    job_dir = tmp_path / "0"
    write_json(job_dir / STATUS_FILE, {"state": "running", "fingerprint": "f"})
    trial = study.ask(space)
    trial.set_user_attr(JOB_DIR_ATTR, str(job_dir))
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)  # the worker "died": no heartbeat since
    optuna.storages.fail_stale_trials(study)

    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.FAIL, 1: TrialState.WAITING}
    assert read_json(job_dir / STATUS_FILE)["state"] == "failed"
    retry = study.ask(space)  # the next ask, by any worker, takes the enqueued retry
    assert (retry.number, retry.params, retry.user_attrs[RETRY_OF_ATTR]) == (1, trial.params, 0)
    # The dead trial does not count toward n_trials: its retry does.
    assert Ledger(study.trials).used == 1

    storage.record_heartbeat(retry._trial_id)
    time.sleep(2.5)  # the retry's worker died too: failed for good, not retried again
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert Ledger(study.trials).used == 1


def test_the_ledger_counts_finished_and_running_trials_toward_the_budget():
    make = optuna.trial.create_trial
    trials = [
        make(state=TrialState.COMPLETE, value=0.5),
        make(state=TrialState.PRUNED),
        make(state=TrialState.FAIL, user_attrs={ERROR_ATTR: "ConfigError: ..."}),
        make(state=TrialState.RUNNING),
        make(state=TrialState.WAITING),
        make(state=TrialState.FAIL),  # its worker died: its retry or a twin counts instead
        make(state=TrialState.FAIL, user_attrs={SURPLUS_ATTR: True}),  # asked past n_trials, closed unrun
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    assert Ledger(trials).used == 4
    assert [t.number for t in Ledger(trials).running()] == [3]
    # Trial 4 was asked with the 4 before it using the budget; a WAITING retry below counts too.
    assert Ledger(trials).is_surplus(4, n_trials=4) and not Ledger(trials).is_surplus(4, n_trials=5)
    assert Ledger(trials).is_surplus(7, n_trials=5) and not Ledger(trials).is_surplus(7, n_trials=6)
