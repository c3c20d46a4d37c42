"""A job's status record (status.json) and the duplicate check within a multirun.

status.json moves running -> complete | pruned | failed | duplicate; `pruned`: an Optuna sweep's
pruner stopped training early, and the job still tested and saved its best epoch.

A sweep repeats a config whenever a swept key does not reach the regime: `regime=lora,full
rank=8,16` asks for full x rank 8 and full x rank 16, which are the same job, since full
fine-tuning reads no rank. The fingerprint is the resolved config without the keys that only
name, tag or place a job.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from lora_lab.job.dir import STATUS_FILE, JobDir

log = logging.getLogger(__name__)
# Keys that do not change what is trained: where it goes, what it is called, how it is logged.
# `rank` is only an input: a regime that uses it carries its resolved value (regime.r, regime.target_r).
# `trial` names the Optuna trial a sweep job reports to (lora_lab/sweeper): its number, study, storage;
# `callbacks.optuna_pruning` is the callback through which it reports. `resume` continues a killed job
# and `callbacks.resume_checkpoint` sets how often it can: neither changes what is trained, nor does
# `malloc_mmap_threshold`, which only bounds memory (job/allocator.py).
NON_EFFECTIVE_KEYS = (
    "paths",
    "logger",
    "hydra",
    "tags",
    "task_name",
    "rank",
    "optimized_metric",
    "keep_checkpoints",
    "trial",
    "callbacks.optuna_pruning",
    "resume",
    "callbacks.resume_checkpoint",
    "malloc_mmap_threshold",
)


def fingerprint(cfg: DictConfig) -> str:
    """SHA-256 of the effective config (resolved, order-independent).

    The job's own dir is interpolated into other keys (trainer.default_root_dir, the checkpoint
    dirpath), so it is replaced by a placeholder before resolving.
    """
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = "<job dir>"
        for dotted in (k for k in NON_EFFECTIVE_KEYS if "." in k):
            parent, _, key = dotted.rpartition(".")
            if isinstance(node := OmegaConf.select(cfg, parent), DictConfig):
                node.pop(key, None)
    effective = {
        key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        for key, value in cfg.items()
        if key not in NON_EFFECTIVE_KEYS
    }
    return hashlib.sha256(json.dumps(effective, sort_keys=True, default=str).encode()).hexdigest()


class JobRecord:
    def __init__(self, run_dir: Path, cfg: DictConfig, sweep_dir: Path | None):
        self.run_dir, self.sweep_dir = run_dir, sweep_dir
        self.fingerprint = fingerprint(cfg)
        self.dir = JobDir(run_dir)
        self.path = self.dir.status_path

    def _write(self, state: str, **extra: object) -> None:
        self.dir.write_status({"state": state, "fingerprint": self.fingerprint, **extra})

    def find_original(self) -> Path | None:
        """The first job of the same multirun with the same effective config, if any."""
        if self.sweep_dir is None:
            return None
        siblings = sorted(self.sweep_dir.glob(f"*/{STATUS_FILE}"), key=lambda p: _job_order(p.parent.name))
        for path in siblings:
            if path.parent == self.run_dir:
                continue
            status = JobDir(path.parent).status() or {}
            if status.get("fingerprint") == self.fingerprint and status.get("state") in ("running", "complete"):
                return path.parent
        return None

    def start(self) -> None:
        self._write("running")

    def finish(self, metrics: dict) -> None:
        """complete, or pruned when an Optuna pruner stopped the fit (metrics["trial/pruned_at"])."""
        if (pruned_at := metrics.get("trial/pruned_at")) is not None:
            self._write("pruned", pruned_at=pruned_at)
        else:
            self._write("complete")

    def fail(self, err: BaseException) -> None:
        self._write("failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())

    def answer_from(self, original: Path, metric: str) -> float | None:
        """Record this job as a duplicate of `original` and answer with its metric (None while it runs)."""
        self._write("duplicate", duplicate_of=str(original))
        log.info("Effective config repeats job %s: recorded as its duplicate, not trained again.", original)
        return JobDir(original).metric(metric)


def fail_abandoned(run_dir: Path, reason: str) -> None:
    """Mark a job whose process died while `running` as failed, so no later job takes it for an original."""
    job_dir = JobDir(run_dir)
    if (status := job_dir.status()) is not None and status["state"] == "running":
        job_dir.write_status({**status, "state": "failed", "error": reason})


def _job_order(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (10**9, name)
