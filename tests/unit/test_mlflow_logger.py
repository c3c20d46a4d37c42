"""logger=mlflow: a tiny job logs params, metrics and tags into a local SQLite store; a missing MLflow is named."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from lora_lab.artifacts import read_json
from lora_lab.train import train

# The group tag is ${run_group:}, which reads Hydra's runtime dir: the compose API has none, so name it.
MLFLOW = ["logger=mlflow", "logger.mlflow.tags.group=sweep-abc"]
# The optional extra; the dev extra must carry it for these tests to run in CI.
NEEDS_MLFLOW = "logger=mlflow needs MLflow: pip install 'lora_lab[mlflow]'"


def test_a_tiny_job_logs_a_run_with_params_metrics_and_tags(tiny_cfg):
    # MLflow creates its SQLite schema (dozens of migrations) on first use: ~10 s on top of the job
    MlflowClient = pytest.importorskip("mlflow.tracking", reason=NEEDS_MLFLOW).MlflowClient
    cfg = tiny_cfg(*MLFLOW, "regime=lora", "seed=7")
    run_dir = Path(cfg.paths.output_dir)
    train(cfg)
    store = run_dir.parent / "mlruns" / "mlflow.db"  # beside the job dir: shared by a sweep's jobs
    assert store.is_file()
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("lora_lab")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "b2b_sales_notes/tiny_bert/lora/seed=7"
    params = run.data.params
    assert params["seed"] == "7" and params["regime/name"] == "lora" and params["regime/r"] == "8"
    assert params["backbone/name"] == "tiny_bert" and params["data/batch_size"] == "16"
    metrics = read_json(run_dir / "metrics.json")
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert run.data.metrics["val/acc_best"] == pytest.approx(metrics["val/acc_best"])
    assert {"val/acc", "val/loss", "test/f1_macro"} <= set(run.data.metrics)
    # The job's summary (counts, sizes, times), which Lightning never logs, reaches the run too.
    for key in ("params/trainable", "artifact/adapter_bytes", "time/train_s", "throughput/train_examples_per_s"):
        assert run.data.metrics[key] == pytest.approx(metrics[key]), key
    tags = run.data.tags
    assert tags["group"] == "sweep-abc" and tags["job_dir"] == str(run_dir)
    assert tags["dataset"] == "b2b_sales_notes" and tags["regime"] == "lora" and tags["rank"] == "8"
    assert (run_dir / "csv" / "metrics.csv").is_file()  # CSV stays on beside MLflow


def test_the_store_path_is_made_absolute_and_its_dir_created(tiny_cfg, tmp_path: Path):
    pytest.importorskip("mlflow", reason=NEEDS_MLFLOW)
    cfg = tiny_cfg(*MLFLOW)
    logger = instantiate(cfg.logger.mlflow)
    # ${paths.output_dir}/../mlruns: the job's parent, i.e. the sweep dir in a multirun.
    assert logger._tracking_uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert (tmp_path / "mlruns").is_dir()


def test_a_missing_mlflow_names_the_install_command(tiny_cfg, monkeypatch):
    cfg = tiny_cfg(*MLFLOW)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets when it is not installed
    with pytest.raises(
        Exception, match=r"logger=mlflow needs MLflow, which is not installed: pip install 'lora_lab\[mlflow\]'"
    ):
        instantiate(cfg.logger.mlflow)
