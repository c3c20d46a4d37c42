"""A sweep job reports each validation to its trial through the storage and stops when the pruner says so;
in a study of several objectives, by lora_lab's median rule on the first one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from optuna.trial import TrialState

from lora_lab.artifacts import read_json
from lora_lab.job.record import fingerprint
from lora_lab.sweeper.config import PRUNERS
from lora_lab.sweeper.pruning import FirstObjectivePruning, intermediates, median_rule
from lora_lab.sweeper.storage import OBJECTIVES_ATTR, PRUNED_AT_ATTR, PRUNER_ATTR, open_storage
from lora_lab.sweeper.sweeper import FIRST_OBJECTIVE_PRUNING_CALLBACK, trial_overrides
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


# Several objectives: lora_lab's median rule on the first one (Optuna refuses trial.report there).
HISTORY = [{0: 0.5, 1: 0.4}, {0: 0.7, 1: 0.6}, {0: 0.9}]  # first objective by step of 3 COMPLETE trials


@pytest.mark.parametrize(
    "value,step,maximize,settings,pruned",
    [
        (0.69, 0, True, {}, True),  # below the median of 0.5, 0.7, 0.9
        (0.7, 0, True, {}, False),  # equal is not worse
        (0.71, 0, False, {}, True),  # minimized: above the median is worse
        (0.69, 0, False, {}, False),
        (0.49, 1, True, {"n_startup_trials": 2}, True),  # step 1: two trials have it, median 0.5
        (0.49, 1, True, {"n_startup_trials": 3}, False),  # the third never reached step 1
        (0.0, 0, True, {"n_startup_trials": 4}, False),  # fewer COMPLETE trials than n_startup_trials
        (0.0, 0, True, {"n_warmup_steps": 1}, False),  # never before n_warmup_steps
        (0.0, 1, True, {"n_startup_trials": 2, "n_warmup_steps": 1}, True),
        (float("nan"), 0, False, {}, True),  # nan is worse than anything
        (0.95, 2, True, {"n_startup_trials": 0}, False),  # nobody has step 2: no median to compare with
    ],
)
def test_the_median_rule_prunes_a_value_worse_than_the_completed_trials_median_at_its_step(
    value: float, step: int, maximize: bool, settings: dict, pruned: bool
):
    defaults = {"n_startup_trials": 3, "n_warmup_steps": 0}
    assert median_rule(value, step, HISTORY, maximize, **{**defaults, **settings}) is pruned


def test_a_nan_in_a_completed_trial_does_not_count_toward_the_median():
    history = [{0: float("nan")}, {0: 0.2}, {0: 0.4}]
    assert not median_rule(0.1, 0, history, True, n_startup_trials=3, n_warmup_steps=0)  # 2 values only
    assert median_rule(0.25, 0, history, True, n_startup_trials=2, n_warmup_steps=0)  # median 0.3


def _objectives_study(tmp_path: Path, first: str, direction: str, pruner: dict) -> tuple[str, optuna.Study]:
    """A study of two objectives as the sweeper leaves it: trials 0-2 COMPLETE with their first
    objective stored by step (HISTORY), trial 3 running, its job not yet started."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=open_storage(url), study_name="s", directions=[direction, "minimize"])
    study.set_user_attr(PRUNER_ATTR, pruner)
    study.set_user_attr(OBJECTIVES_ATTR, [[first, direction], ["artifact/adapter_bytes", "minimize"]])
    for steps in HISTORY:
        attrs = {f"intermediate/{step}": value for step, value in steps.items()}
        study.add_trial(optuna.trial.create_trial(values=[steps[0], 1.0], user_attrs=attrs))
    study.ask()
    return url, study


def _validations(callback: FirstObjectivePruning, monitor: str, values: list[float]) -> list[bool]:
    """Run the callback as Lightning would over validations scoring `values`; whether fit stopped after each."""
    stops = []
    trainer = SimpleNamespace(
        is_global_zero=True, sanity_checking=False, state=SimpleNamespace(fn="fit"), should_stop=False
    )
    trainer.strategy = SimpleNamespace(broadcast=lambda flag: flag)
    callback.on_fit_start(trainer, None)
    for value in values:
        trainer.callback_metrics = {monitor: torch.tensor(value), "val/loss": torch.tensor(1.0)}
        callback.on_validation_end(trainer, None)
        stops.append(trainer.should_stop)
    return stops


@pytest.mark.parametrize(
    "direction,stops,pruned_at",
    [("maximize", [False, True], 1), ("minimize", [False, False], None)],
)
def test_the_job_stores_the_first_objective_by_step_and_stops_by_the_median_rule(
    tmp_path: Path, direction: str, stops: list[bool], pruned_at: int | None
):
    # Step 0 scores 0.3, below every trial's 0.5-0.9 but within the warmup; step 1 scores 0.45 against
    # a median of 0.5: worse when val/f1_macro is maximized, better when (oddly) minimized.
    pruner = {**PRUNERS["median"], "n_startup_trials": 2, "n_warmup_steps": 1}
    url, study = _objectives_study(tmp_path, "val/f1_macro", direction, pruner)
    callback = FirstObjectivePruning(url, "s", 3, "val/f1_macro")
    assert _validations(callback, "val/f1_macro", [0.3, 0.45]) == stops
    trial = study.trials[3]
    assert intermediates(trial.user_attrs) == pytest.approx({0: 0.3, 1: 0.45})
    assert trial.user_attrs.get(PRUNED_AT_ATTR) == pruned_at == callback.results["trial/pruned_at"]
    assert trial.state == TrialState.RUNNING and trial.intermediate_values == {}  # the sweeper tells the study


def test_with_the_nop_pruner_the_job_stores_its_values_and_never_stops(tmp_path: Path):
    url, study = _objectives_study(tmp_path, "val/acc", "maximize", PRUNERS["nop"])
    assert _validations(FirstObjectivePruning(url, "s", 3, "val/acc"), "val/acc", [0.0, 0.0, 0.0]) == [False] * 3
    assert intermediates(study.trials[3].user_attrs) == {0: 0.0, 1: 0.0, 2: 0.0}


def test_a_tiny_job_of_a_study_of_objectives_is_pruned_after_its_first_validation(tmp_path: Path, tiny_cfg):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=open_storage(url), study_name="s", directions=["maximize", "minimize"])
    study.set_user_attr(PRUNER_ATTR, MEDIAN)  # one COMPLETE trial is enough, from step 0
    study.set_user_attr(OBJECTIVES_ATTR, [["val/acc_best", "maximize"], ["artifact/adapter_bytes", "minimize"]])
    history = {f"intermediate/{step}": 0.99 for step in range(3)}
    study.add_trial(optuna.trial.create_trial(values=[0.99, 1.0], user_attrs=history))
    study.ask()
    cfg = tiny_cfg(*SHORT, *trial_overrides(1, "s", url, "val/acc_best", FIRST_OBJECTIVE_PRUNING_CALLBACK))
    train(cfg)

    run_dir = Path(cfg.paths.output_dir)
    metrics, status = read_json(run_dir / "metrics.json"), read_json(run_dir / "status.json")
    assert (status["state"], status["pruned_at"], metrics["trial/pruned_at"], metrics["epochs"]) == ("pruned", 0, 0, 1)
    trial = study.trials[1]
    assert trial.user_attrs[PRUNED_AT_ATTR] == 0
    # The value stored at step 0 is the job's val/acc_best (one epoch ran), to float32 precision.
    assert intermediates(trial.user_attrs) == {0: pytest.approx(metrics["val/acc_best"], abs=1e-6)}
    assert "test/acc" in metrics and (run_dir / "adapter").is_dir()  # tested and saved all the same
