"""JobDir: one reader of a job dir's files, and job dirs saved before the package layout moved."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lora_lab.job.dir import MOVED_TARGETS, JobDir
from tests.helpers import finished_job


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_job(tmp_path_factory.mktemp("job_dir") / "job", "regime=lora")


def test_job_dir_reads_metrics_labels_config_and_status(job_dir: Path):
    job = JobDir(job_dir)
    assert job.is_finished and job.is_job_dir
    assert job.metrics()["test/acc"] == job.metric("test/acc") and job.metric("no/such") is None
    labels = job.labels()  # in class-id order: the DataModule sorts the training labels
    assert labels == [job.id2label()[i] for i in range(len(labels))] == sorted(labels)
    assert set(labels) == set(job.metrics()["test/f1_per_class"])
    assert job.status()["state"] == "complete" and job.config().regime.name == "lora"
    assert JobDir(job_dir / "nowhere").status() is None and not JobDir(job_dir / "nowhere").is_finished


@pytest.fixture(scope="module")
def old_job_dir(job_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished job as a job dir saved before the move: its config names the old `_target_`s."""
    old = tmp_path_factory.mktemp("old") / "job"
    shutil.copytree(job_dir, old)
    config = (old / ".hydra" / "config.yaml").read_text()
    for before, now in MOVED_TARGETS.items():
        config = config.replace(f"_target_: {now}\n", f"_target_: {before}\n")
    assert "lora_lab.callbacks.ResourceMonitor" in config and "lora_lab.checkpointing.ResumeState" in config
    cfg = OmegaConf.create(config)
    cfg.logger = {"mlflow": {"_target_": "lora_lab.mlflow_logger.MLFlowLogger"}}
    OmegaConf.save(cfg, old / ".hydra" / "config.yaml")
    return old


def test_an_old_config_names_the_classes_where_they_live_now(old_job_dir: Path):
    cfg = JobDir(old_job_dir).config()
    assert cfg.callbacks.resource_monitor._target_ == "lora_lab.callbacks.resource_monitor.ResourceMonitor"
    assert cfg.callbacks.resume_state._target_ == "lora_lab.callbacks.resume_state.ResumeState"
    assert cfg.logger.mlflow._target_ == "lora_lab.callbacks.mlflow.MLFlowLogger"
    # Interpolations stay as they were saved, and every callback of the old job instantiates again.
    assert OmegaConf.to_container(cfg.callbacks.model_checkpoint)["dirpath"].startswith("${paths.output_dir}")
    assert all(instantiate(c) is not None for c in cfg.callbacks.values() if c is not None)


def test_an_old_job_dir_still_evaluates_serves_and_predicts(old_job_dir: Path, tmp_path: Path):
    from lora_lab.eval import evaluate
    from lora_lab.models.predictor import Predictor
    from lora_lab.serve.sources import resolve_source

    saved = JobDir(old_job_dir).metrics()
    results = evaluate(old_job_dir, tmp_path / "eval")
    assert results["test/acc"] == pytest.approx(saved["test/acc"], abs=1e-6)
    source = resolve_source(old_job_dir)
    assert source.id2label == JobDir(old_job_dir).id2label() and source.adapter_dir is not None
    predictor = Predictor(old_job_dir / "merged")
    assert set(predictor.predict(["a short note", "another one"])) <= set(JobDir(old_job_dir).labels())
