"""callbacks.min_train_steps, the size rule: a training set too small for N optimizer steps in
trainer.max_epochs epochs trains for the epochs that reach N, validated about as often as planned."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
from hydra.utils import instantiate

from lora_lab.artifacts import read_json
from lora_lab.callbacks.min_steps import MinTrainSteps
from lora_lab.errors import ConfigError
from tests.helpers import compose_train, finished_job

# TINY's job: 110 training rows at batch 16 are 7 optimizer steps an epoch, and trainer.max_epochs=1,
# set on its command line; epochs_set=false makes that one epoch the default the rule may replace.
ROWS, PER_EPOCH = 110, 7
RULE = "callbacks.min_train_steps.epochs_set=false"


def validations(run_dir: Path) -> list[int]:
    """The epochs the CSV logger saw a validation score in."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return sorted({int(r["epoch"]) for r in csv.DictReader(f) if r.get("val/acc")})


def test_a_small_training_set_trains_for_the_rule_steps_and_validates_once_per_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="lora_lab.callbacks.min_steps")
    # 20 steps need ceil(20 / 7) = 3 epochs; one planned epoch -> validated every 3, once, at the end.
    job = finished_job(tmp_path / "job", RULE, "callbacks.min_train_steps.steps=20")
    metrics = read_json(job / "metrics.json")
    assert metrics["data/train_rows"] == ROWS and metrics["train/steps_per_epoch"] == PER_EPOCH
    assert metrics["epochs"] == 3 and metrics["train/examples_seen"] == 3 * ROWS
    assert validations(job) == [2]
    assert metrics["train/size_rule"] == "3 epochs, validated every 3: 7 optimizer steps an epoch x 1 epoch < 20"
    assert f"size rule: {metrics['train/size_rule']}" in caplog.text


@pytest.mark.parametrize(
    "overrides, why",
    [
        ([RULE, "callbacks.min_train_steps.steps=7"], "1 epoch: 7 optimizer steps an epoch x 1 >= 7"),
        ([RULE, "callbacks.min_train_steps.steps=20", "trainer.max_steps=7"], "bounded by trainer.max_steps"),
        ([RULE, "callbacks.min_train_steps.steps=0"], "the size rule is off"),
        (["callbacks.min_train_steps.steps=20"], "as trainer.max_epochs on the command line says"),  # TINY's
    ],
    ids=["enough-steps", "max-steps-set", "off", "epochs-on-the-command-line"],
)
def test_the_rule_leaves_a_job_alone_when_it_has_its_steps_or_the_user_bounded_them(tmp_path: Path, overrides, why):
    metrics = read_json(finished_job(tmp_path / "job", *overrides) / "metrics.json")
    assert (
        metrics["epochs"] == 1
        and metrics["train/size_rule"].startswith("1 epoch")
        and why in metrics["train/size_rule"]
    )


@pytest.mark.parametrize(
    "overrides, epochs_set", [([], False), (["trainer.max_epochs=3"], True), (["trainer.max_steps=50"], False)]
)
def test_epochs_on_the_command_line_are_the_users_and_the_default_is_the_rules(overrides, epochs_set):
    cfg = compose_train(Path("/nonexistent"), overrides)
    assert instantiate(cfg.callbacks.min_train_steps).epochs_set is epochs_set


@pytest.mark.parametrize("steps", [-1, 2.5, True])
def test_a_bad_step_count_is_a_config_error_naming_the_key(steps):
    with pytest.raises(ConfigError, match="callbacks.min_train_steps.steps"):
        MinTrainSteps(steps)


def test_resumes_fingerprint_check_reads_the_command_line_as_the_job_does(monkeypatch):
    """Hydra's callbacks (resume=true's fingerprint check) see the config with its hydra node but no
    running HydraConfig: epochs_set must resolve as in the job, or every resume reads as another config."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from lora_lab.config import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["trainer.max_epochs=3"], return_hydra_config=True)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    assert not HydraConfig.initialized()
    assert OmegaConf.select(cfg, "callbacks.min_train_steps.epochs_set") is True
