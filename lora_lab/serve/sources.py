"""What a path given to the server holds: a job dir, an export dir, or a sweep dir (its best job: job/pick.py).

Everything is checked before any weight loads: the labels exist, the weights are safetensors
(nothing is ever unpickled), an adapter dir is a PEFT adapter. The result is a `ModelSource`, a
plain description the engine loads from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import lora_lab.config  # noqa: F401 - registers the resolvers a job's saved config uses
from lora_lab.artifacts import modified_at, pickled_weights, read_json
from lora_lab.data.truncation import Truncation
from lora_lab.errors import ConfigError
from lora_lab.export.bundle import CHECK_FILE, EXPORT_FILE
from lora_lab.job.dir import CONFIG_FILE, LABELS_FILE, METRICS_FILE, JobDir
from lora_lab.job.pick import is_sweep_dir, pick_job
from lora_lab.models.stack import stack_dir_of


@dataclass
class ModelSource:
    """A trained model as the server loads it: base (backbone config + seed) + adapter/, or merged/."""

    path: Path
    regime: str
    backbone: DictConfig  # the job's backbone node, resolved: what rebuilds the base
    seed: int
    id2label: dict[int, str]
    adapter_dir: Path | None  # a PEFT adapter (+ head.safetensors for a pooled head)
    merged_dir: Path | None
    stack_dir: Path | None = None  # a stacked job's TF-IDF part and weight (models/stack.py)
    fingerprint: str | None = None  # the base's, as recorded by an export (a job dir: computed on load)
    dataset: DictConfig | None = None  # the training data's Source config: /v1/similar's index
    truncation: Truncation | None = None  # how training cut long texts: the server cuts them alike
    train_counts: dict[str, int] | None = None  # the training split's rows per label: the drift gauge's reference
    info: dict[str, Any] = field(default_factory=dict)  # rank, test metrics, trained_at: GET /v1/adapters

    @property
    def pooled(self) -> bool:
        return self.backbone.get("pooling") in ("mean", "last")


def resolve_source(path: str | Path) -> ModelSource:
    """The model a path holds; a ConfigError names what is missing and what to pass instead."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"{path}: no such directory; pass a job dir (outputs/<date>/<time>), an export dir or a sweep dir"
        )
    if (path / EXPORT_FILE).is_file():
        return _from_export(path)
    if JobDir(path).is_finished:
        return _from_job(path)
    if is_sweep_dir(path):
        return _from_job(pick_job(path, "best").job_dir)
    raise ConfigError(
        f"{path}: neither a finished job ({METRICS_FILE}), an export ({EXPORT_FILE}) nor a sweep with a finished job"
    )


def _from_job(run_dir: Path) -> ModelSource:
    job_dir = JobDir(run_dir)
    if not job_dir.config_path.is_file():
        raise ConfigError(f"{run_dir}: no {CONFIG_FILE}, so the base it was trained on is unknown")
    cfg = job_dir.config()
    metrics = job_dir.metrics()
    regime = cfg.regime
    info = {
        "regime": regime.name,
        "rank": regime.get("r", regime.get("target_r")),
        "test_acc": metrics.get("test/acc"),
        "test_f1_macro": metrics.get("test/f1_macro"),
        "trained_at": modified_at(job_dir.metrics_path),
        "source": "job",
    }
    source = _checked(run_dir, cfg.backbone, int(cfg.seed), regime.name, info)
    source.dataset = _resolved(cfg.dataset)
    length = cfg.data.get("max_length")  # jobs from before data/truncation: a number, cut at the head
    source.truncation = Truncation.from_record(
        metrics.get("data/truncation"), length if isinstance(length, int) else cfg.backbone.max_length
    )
    return source


def _from_export(export_dir: Path) -> ModelSource:
    refuse_failed_check(export_dir)
    meta = read_json(export_dir / EXPORT_FILE)
    try:
        info = {
            "regime": meta["regime"],
            "rank": meta.get("rank"),
            "test_acc": meta.get("metrics", {}).get("test/acc"),
            "test_f1_macro": meta.get("metrics", {}).get("test/f1_macro"),
            "trained_at": meta.get("trained_at"),
            "source": "export",
        }
        source = _checked(
            export_dir, OmegaConf.create(meta["backbone_config"]), int(meta["seed"]), meta["regime"], info
        )
        source.fingerprint = meta["base_fingerprint"]
    except KeyError as err:
        raise ConfigError(
            f"{export_dir / EXPORT_FILE}: no {err} entry; re-export the job with python -m lora_lab.export"
        ) from err
    source.dataset = OmegaConf.create(meta["dataset_config"]) if meta.get("dataset_config") else None
    source.truncation = Truncation.from_record(meta.get("truncation"), int(meta.get("max_length") or 512))
    return source


def refuse_failed_check(export_dir: Path) -> None:
    """An export whose loaders did not answer as lora_lab did (written with keep_failed=true) is not served."""
    check = read_json(export_dir / CHECK_FILE) if (export_dir / CHECK_FILE).is_file() else None
    if check is not None and not check.get("passed", False):
        failing = sorted(name for name, result in check.get("loaders", {}).items() if not result.get("passed", True))
        raise ConfigError(
            f"{export_dir}: its {CHECK_FILE} records a failed check ({', '.join(failing) or 'no passing loader'} "
            "did not answer as lora_lab does), so it is not served. Export the job again (without keep_failed=true), "
            "or serve the job dir itself."
        )


def _checked(root: Path, backbone: DictConfig, seed: int, regime: str, info: dict) -> ModelSource:
    """Validate before loading: labels, safetensors only, a PEFT adapter or a merged model."""
    if not JobDir(root).labels_path.is_file():
        raise ConfigError(f"{root}: no {LABELS_FILE}; only a finished job or an export can be served")
    id2label = JobDir(root).id2label()
    if pickled := pickled_weights(root):
        names = ", ".join(str(p.relative_to(root)) for p in pickled)
        raise ConfigError(f"{root}: {names} would need unpickling; lora_lab serves safetensors only")
    adapter = root / "adapter"
    adapter_dir = adapter if (adapter / "adapter_config.json").is_file() else None
    merged_dir = root / "merged" if (root / "merged" / "lora_lab_classifier.json").is_file() else None
    if adapter_dir is None and merged_dir is None:
        raise ConfigError(f"{root}: neither adapter/ (a PEFT adapter) nor merged/; nothing to serve")
    stack_dir = JobDir(root).stack_dir if JobDir(root).is_stacked else None
    if stack_dir is None and merged_dir is not None and stack_dir_of(merged_dir) is not None:
        raise ConfigError(f"{root}: merged/ belongs to a stack, but {root}/stack/ is missing; copy it from the job")
    return ModelSource(
        root,
        regime,
        _resolved(backbone),
        seed,
        id2label,
        adapter_dir,
        merged_dir,
        stack_dir=stack_dir,
        info=info,
        train_counts=JobDir(root).train_label_counts(),
    )


def _resolved(node: DictConfig) -> DictConfig:
    """A config node with its interpolations (the embedded model's path, data_dir) resolved here."""
    return OmegaConf.create(OmegaConf.to_container(node, resolve=True))
