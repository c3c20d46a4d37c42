"""JobDir: a job's dir as every reader sees it, its file names in one place.

    metrics.json          what the job measured, written last: its presence says the job finished
    labels.json           {"id2label": {"0": <label>, ...}, "train_counts": {<label>: rows}}: the label of each
                          class id and the training split's rows per label (an export holds it too)
    status.json           running -> complete | pruned | failed | duplicate (job/record.py writes it)
    provenance.json       code, versions, data files (job/provenance.py)
    .hydra/config.yaml    the job's composed config; .hydra/overrides.yaml its command-line overrides
    merged/, adapter/     the trained model (models/classifier.py), whole and as what it adds to its base
    stack/                the TF-IDF part and mixing weight of a stacked job (models/stack.py)
    test_predictions.json {"true": [...], "predicted": [...]}: label ids of the test rows in split order,
                          as the shipped model (a stack: the mix) answered; the report's paired tests
    test_sample.json      {"seed", "rows", "texts", "labels"}: a seeded sample of the test split, kept so that
                          an export checks its loaders without the data dir (export/parity.py)

Light on purpose (json, omegaconf, pathlib; no torch): the report, the server, the sweeper and Hydra's
callbacks read job dirs before, or without, loading a model.

A job saved before a class moved names the old `_target_` in its config: config() names the class
where it lives now (MOVED_TARGETS), so an old job dir still evaluates, exports, serves and reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lora_lab.artifacts import read_json, write_json

METRICS_FILE = "metrics.json"
LABELS_FILE = "labels.json"
STATUS_FILE = "status.json"
PREDICTIONS_FILE = "test_predictions.json"
PROVENANCE_FILE = "provenance.json"
TEST_SAMPLE_FILE = "test_sample.json"
CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
STACK_DIR = "stack"
# In metrics.json: the epochs a job trained before the auto search paused it (lora_lab/auto/cut.py);
# a paused job is a screening point, continued by another job, not a model to ship.
PAUSED_KEY = "train/paused_at_epoch"

# Old `_target_` -> where the class lives now (the package layout of lora_lab 0.1's second pass).
MOVED_TARGETS = {
    "lora_lab.callbacks.ResourceMonitor": "lora_lab.callbacks.resource_monitor.ResourceMonitor",
    "lora_lab.checkpointing.ResumeState": "lora_lab.callbacks.resume_state.ResumeState",
    "lora_lab.weight_averaging.EMA": "lora_lab.callbacks.ema.EMA",
    "lora_lab.mlflow_logger.MLFlowLogger": "lora_lab.callbacks.mlflow.MLFlowLogger",
    "lora_lab.hydra_callbacks.RefuseFinishedDirs": "lora_lab.cli.hydra_callbacks.RefuseFinishedDirs",
    "lora_lab.hydra_callbacks.CheckOutputDir": "lora_lab.cli.hydra_callbacks.CheckOutputDir",
    "lora_lab.hydra_callbacks.CheckSlurm": "lora_lab.cli.hydra_callbacks.CheckSlurm",
}


def current_targets(node: DictConfig) -> DictConfig:
    """Every `_target_` in a config that names a moved class, renamed to where it lives now (in place;
    interpolations stay unresolved). lora_lab's classes sit in maps (callbacks, logger, hydra.callbacks)."""
    for key, value in node.items_ex(resolve=False):
        if key == "_target_" and value in MOVED_TARGETS:
            node[key] = MOVED_TARGETS[value]
        elif isinstance(value, DictConfig):
            current_targets(value)
    return node


@dataclass(frozen=True)
class JobDir:
    """A job dir (or an export dir, for labels): its files' paths and contents."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str | Path) -> Path:
        return self.path / name

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def labels_path(self) -> Path:
        return self.path / LABELS_FILE

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def provenance_path(self) -> Path:
        return self.path / PROVENANCE_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def overrides_path(self) -> Path:
        return self.path / OVERRIDES_FILE

    @property
    def stack_dir(self) -> Path:
        return self.path / STACK_DIR

    @property
    def is_stacked(self) -> bool:
        """The job ships a stack (its stack/ holds the mix's stack.json): eval, serve and export use this."""
        from lora_lab.models.stack import STACK_FILE  # torch-free callers of JobDir never reach this

        return (self.stack_dir / STACK_FILE).is_file()

    @property
    def is_finished(self) -> bool:
        """metrics.json is written (last of a job's files): every artifact is complete."""
        return self.metrics_path.is_file()

    @property
    def is_job_dir(self) -> bool:
        """A dir Hydra ran a job in (its config) or that a job recorded its state in."""
        return self.status_path.is_file() or self.config_path.is_file()

    def metrics(self) -> dict[str, Any]:
        return read_json(self.metrics_path)

    def metric(self, key: str) -> Any:
        """One value of metrics.json; None while the job has not finished or lacks the key."""
        return self.metrics().get(key) if self.is_finished else None

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics_path, metrics)

    def id2label(self) -> dict[int, str]:
        return {int(i): label for i, label in read_json(self.labels_path)["id2label"].items()}

    def labels(self) -> list[str]:
        """The labels in class-id order."""
        id2label = self.id2label()
        return [id2label[i] for i in range(len(id2label))]

    def write_labels(self, labels: list[str], train_counts: dict[str, int] | None = None) -> None:
        """labels.json: the label of each class id, and the training split's rows per label (what the
        server's drift gauge compares live predictions with)."""
        record: dict[str, Any] = {"id2label": {str(i): label for i, label in enumerate(labels)}}
        if train_counts is not None:
            record["train_counts"] = {label: int(train_counts.get(label, 0)) for label in labels}
        write_json(self.labels_path, record)

    def train_label_counts(self) -> dict[str, int] | None:
        """The training split's rows per label, or None (a job from before labels.json kept them)."""
        return read_json(self.labels_path).get("train_counts")

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS_FILE

    def write_test_predictions(self, true: list[int], predicted: list[int]) -> None:
        write_json(self.predictions_path, {"true": true, "predicted": predicted})

    def test_correct(self) -> list[bool] | None:
        """Per test row (split order): did the shipped model answer right? None: not recorded (a DDP
        job, or a job from before test_predictions.json)."""
        if not self.predictions_path.is_file():
            return None
        record = read_json(self.predictions_path)
        return [t == p for t, p in zip(record["true"], record["predicted"])]

    @property
    def test_sample_path(self) -> Path:
        return self.path / TEST_SAMPLE_FILE

    def write_test_sample(self, sample: dict[str, Any]) -> None:
        write_json(self.test_sample_path, sample)

    def test_sample(self) -> dict[str, Any] | None:
        """test_sample.json, or None (a job from before it, or a job with no test split)."""
        return read_json(self.test_sample_path) if self.test_sample_path.is_file() else None

    def status(self) -> dict[str, Any] | None:
        """status.json, or None: the job never started (or this is no job dir)."""
        return read_json(self.status_path) if self.status_path.is_file() else None

    def write_status(self, status: dict[str, Any]) -> None:
        write_json(self.status_path, status)

    def provenance(self) -> dict[str, Any] | None:
        return read_json(self.provenance_path) if self.provenance_path.is_file() else None

    def config(self) -> DictConfig:
        """The job's .hydra/config.yaml, unresolved, its moved `_target_`s named as they are now."""
        return current_targets(OmegaConf.load(self.config_path))

    def overrides(self) -> list[str]:
        """The job's command-line overrides ([] when Hydra wrote none)."""
        return [str(o) for o in OmegaConf.load(self.overrides_path)] if self.overrides_path.is_file() else []
