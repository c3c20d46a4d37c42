"""Read a sweep's job dirs into rows: what each job was (config), how it ended (status) and what it measured."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

import lora_lab.config  # noqa: F401 - registers the resolvers that .hydra/config.yaml uses
from lora_lab.job.dir import CONFIG_FILE, STATUS_FILE, JobDir
from lora_lab.job.record import _job_order, fingerprint
from lora_lab.report.errors import ReportError

# LoRA-family regimes carry their resolved rank as `r`; AdaLoRA's final average rank is `target_r`.
RANK_KEYS = ("r", "target_r")
# Override keys the table shows as columns of their own; a job's other varied overrides form its `variant`.
COLUMN_KEYS = frozenset(
    {
        "dataset",
        "backbone",
        "regime",
        "stack",  # shown in the regime column: lora+tfidf
        "rank",
        "seed",
        "regime.learning_rate",
        "trainer.max_epochs",
        "data.batch_size",
        "shots_per_class",
    }
)
# Override keys (and key prefixes) that change how a job runs or logs, not what it computes: never a variant.
NO_EFFECT_KEYS = ("trainer.enable_progress_bar", "logger", "callbacks.", "paths.", "hydra.", "trial.")
# Replaces the seed when fingerprinting a job's config, so that seeds of one config share a group.
SEED_PLACEHOLDER = "<any seed>"


@dataclass
class JobRow:
    """One job dir as a row: its config settings, its state and its metrics (empty unless it finished)."""

    name: str
    path: Path
    state: str
    note: str = ""
    dataset: str | None = None
    backbone: str | None = None
    regime: str | None = None
    rank: int | None = None
    seed: int | None = None
    learning_rate: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    shots_per_class: int | None = None
    overrides: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    # The job's effective config without its seed: jobs with the same key differ only by seed.
    group_key: str | None = None
    # Overrides that set this job apart from the sweep's other jobs, beyond the table's own columns.
    variant: str = ""
    # "<number> <STATE>" of the Optuna trial that ran this job, when the sweep has a study.
    trial: str = ""
    # provenance.json: code commit, library versions, data files' sha256 (None: the job predates it).
    provenance: dict[str, Any] | None = None

    @property
    def scope(self) -> tuple[str, str]:
        """(dataset, backbone): what results compare within (accuracies on different data do not)."""
        return (str(self.dataset), str(self.backbone))

    @property
    def finished(self) -> bool:
        """Complete with a metrics.json: the jobs that comparisons and plots use."""
        return self.state == "complete" and "test/acc" in self.metrics

    def metric(self, key: str) -> float | None:
        value = self.metrics.get(key)
        return float(value) if isinstance(value, (int, float)) else None


def collect_jobs(sweep_dir: Path, also: Iterable[Path] = ()) -> list[JobRow]:
    """Every job dir directly under `sweep_dir` (a multirun dir, or outputs/<date> for single runs),
    and the existing job dirs among `also` (a shared study's jobs in other workers' sweep dirs)."""
    if not sweep_dir.is_dir():
        raise ReportError(
            f"{sweep_dir} is not a directory: pass the dir of a multirun or sweep (multirun/<date>/<time>) "
            "or the parent of single runs (outputs/<date>)"
        )
    if is_job_dir(sweep_dir):
        raise ReportError(f"{sweep_dir} is a single job's dir: pass the dir that holds the jobs, {sweep_dir.parent}")
    found = {p.resolve(): p for p in sweep_dir.iterdir() if p.is_dir() and is_job_dir(p)}
    for path in also:
        if path.is_dir() and is_job_dir(path):
            found.setdefault(path.resolve(), path)
    dirs = sorted(found.values(), key=lambda p: _job_order(p.name))
    if not dirs:
        raise ReportError(
            f"no job dirs in {sweep_dir}: a job dir holds {STATUS_FILE} or {CONFIG_FILE}. Pass the dir of a "
            "multirun or sweep (multirun/<date>/<time>), or outputs/<date> for single runs"
        )
    jobs = [read_job(path) for path in dirs]
    _set_variants(jobs)
    return jobs


def read_job(path: Path) -> JobRow:
    """One job dir into a JobRow; a job that stopped before writing its status is `unknown`, said in its note."""
    job_dir = JobDir(path)
    status = job_dir.status()
    job = JobRow(name=path.name, path=path, state=status["state"] if status else "unknown")
    if status is None:
        job.note = f"no {STATUS_FILE}: the job stopped before it started (see its log)"
    elif job.state == "duplicate":
        job.note = f"repeats job {Path(status['duplicate_of']).name}"
    elif status.get("error"):
        job.note = str(status["error"]).splitlines()[0][:160]
    elif job.state == "running":
        job.note = "no end recorded: still running, or killed"
    if job_dir.is_finished:
        job.metrics = job_dir.metrics()
    elif job.state == "complete":
        job.note = f"complete, but {job_dir.metrics_path.name} is missing"
    job.provenance = job_dir.provenance()
    job.overrides = job_dir.overrides()
    if job_dir.config_path.exists():
        _read_config(job, job_dir.config())
    else:
        job.note = "; ".join(filter(None, [job.note, f"no {CONFIG_FILE}: its settings are unknown"]))
    return job


def _read_config(job: JobRow, cfg: DictConfig) -> None:
    try:
        job.dataset = OmegaConf.select(cfg, "dataset.name")
        job.backbone = OmegaConf.select(cfg, "backbone.name")
        job.regime = OmegaConf.select(cfg, "regime.name")
        if stacked_with := job.metrics.get("stack/with"):  # a stack is a configuration of its own (job/stacking.py)
            job.regime = f"{job.regime}+{stacked_with}"
        job.rank = next((cfg.regime[k] for k in RANK_KEYS if k in cfg.get("regime", {})), None)
        job.seed = OmegaConf.select(cfg, "seed")
        job.learning_rate = OmegaConf.select(cfg, "regime.learning_rate")
        job.epochs = OmegaConf.select(cfg, "trainer.max_epochs")
        job.batch_size = OmegaConf.select(cfg, "data.batch_size")
        job.shots_per_class = OmegaConf.select(cfg, "shots_per_class")
        seedless = copy.deepcopy(cfg)
        with open_dict(seedless):
            seedless.seed = SEED_PLACEHOLDER
        job.group_key = fingerprint(seedless)
    except OmegaConfBaseException as err:
        raise ReportError(
            f"{job.path / CONFIG_FILE} does not resolve ({type(err).__name__}: {err}). Run the report with the "
            "lora_lab that ran the sweep (its resolvers must be importable)"
        ) from err


def override_key(override: str) -> str:
    """`regime.learning_rate=1e-3` -> `regime.learning_rate` (also for `+key=` and `~key` forms)."""
    return override.split("=", 1)[0].lstrip("+~")


def _set_variants(jobs: list[JobRow]) -> None:
    """A job's variant: its overrides not shared by every job of its scope, minus those shown as columns."""
    scopes: dict[tuple[str, str], list[JobRow]] = {}
    for job in jobs:
        scopes.setdefault(job.scope, []).append(job)
    for members in scopes.values():
        counts = Counter(o for job in members for o in set(job.overrides))
        common = {o for o, n in counts.items() if n == len(members)}
        for job in members:
            job.variant = " ".join(o for o in job.overrides if o not in common and _shows_in_variant(override_key(o)))


def _shows_in_variant(key: str) -> bool:
    return key not in COLUMN_KEYS and not any(
        key == k or (k.endswith(".") and key.startswith(k)) for k in NO_EFFECT_KEYS
    )


def is_job_dir(path: Path) -> bool:
    """A dir Hydra ran a job in (its config) or that a job recorded its state in."""
    return JobDir(path).is_job_dir
