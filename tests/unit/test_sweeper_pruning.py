"""A sweep job reports each validation to its trial through the storage and stops when the pruner says so."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lora_lab.artifacts import read_json
from lora_lab.job.record import fingerprint
from lora_lab.sweeper.storage import PRUNED_AT_ATTR, PRUNER_ATTR, open_storage
from lora_lab.sweeper.sweeper import trial_overrides
from lora_lab.train import train

# One training and one validation batch per epoch: the pruning decision is what is under test.
SHORT = ["trainer.max_epochs=3", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "logger=none"]
MEDIAN = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0}


def _study_with_history(tmp_path: Path, history_value: float) -> tuple[str, optuna.Study]:
    """A study as the sweeper leaves it: one finished trial that scored `history_value` at every
    validation step, and trial 1 running (asked, its job not yet started)."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
    study.set_user_attr(PRUNER_ATTR, MEDIAN)
    history = {step: history_value for step in range(3)}
    study.add_trial(optuna.trial.create_trial(value=history_value, intermediate_values=history))
    study.ask()
    return url, study


def _job(tiny_cfg, url: str):
    """Trial 1's job, with the overrides the sweeper gives it."""
    return tiny_cfg(*SHORT, *trial_overrides(1, "s", url, "val/acc_best"))


@pytest.mark.parametrize("history_value,pruned", [(0.99, True), (0.0, False)])
def test_the_job_stops_when_its_trial_is_worse_than_the_median_and_only_then(
    tmp_path: Path, tiny_cfg, history_value: float, pruned: bool
):
    url, study = _study_with_history(tmp_path, history_value)
    cfg = _job(tiny_cfg, url)
    value = train(cfg)

    run_dir = Path(cfg.paths.output_dir)
    metrics, status = read_json(run_dir / "metrics.json"), read_json(run_dir / "status.json")
    trial = study.trials[1]
    assert metrics["trial/number"] == 1
    if pruned:
        # A random tiny model scores far below 0.99 at its first validation: stopped after it.
        assert (status["state"], status["pruned_at"], metrics["trial/pruned_at"]) == ("pruned", 0, 0)
        assert metrics["epochs"] == 1 and list(trial.intermediate_values) == [0]
        assert trial.user_attrs[PRUNED_AT_ATTR] == 0
    else:
        assert status["state"] == "complete" and metrics["trial/pruned_at"] is None
        assert metrics["epochs"] == 3 and list(trial.intermediate_values) == [0, 1, 2]
        assert PRUNED_AT_ATTR not in trial.user_attrs
    # Pruned or not, the job tested its best epoch and saved it: the evidence stays.
    assert "test/acc" in metrics and (run_dir / "adapter").is_dir()
    # The callback reports val/acc_best (the best so far) after each validation: the reports never go
    # down, and the last one is the job's val/acc_best, which the job returns. Both are the same
    # float32 metric, read once by the callback and once at the end: equal to float32 precision.
    reports = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
    assert reports == sorted(reports)
    assert value == metrics["val/acc_best"] == pytest.approx(reports[-1], rel=0, abs=1e-6)
    # The sweeper, not the job, tells the study: the trial is still running.
    assert trial.state == TrialState.RUNNING


def test_the_trial_identity_does_not_change_the_jobs_fingerprint(tmp_path: Path, tiny_cfg):
    plain = fingerprint(tiny_cfg(*SHORT))
    assert fingerprint(_job(tiny_cfg, f"sqlite:///{tmp_path}/optuna.db")) == plain
