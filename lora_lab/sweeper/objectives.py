"""Several objectives (`hydra.sweeper.objectives`): their checks, each trial's values, the Pareto front.

    hydra.sweeper.objectives={val/acc_best:maximize,artifact/adapter_bytes:minimize}

A mapping metrics.json key -> maximize | minimize, in order: the study's directions follow it and
a finished trial tells the values of its job's metrics.json in that order (a job answered from an
identical earlier job, status.json `duplicate`, tells that job's). Unset, the sweep optimises the
task's `optimized_metric` alone, in `hydra.sweeper.direction`, as the job returns it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from lora_lab.job.dir import JobDir
from lora_lab.sweeper.config import CMAES_TARGET, GP_MULTI_OBJECTIVE_SINCE, GP_TARGET, SAMPLERS, optuna_version
from lora_lab.sweeper.resume import SweepConfigError
from lora_lab.sweeper.storage import JOB_DIR_ATTR

DIRECTIONS = ("maximize", "minimize")
# The first objective is pruned on when it is logged at each validation: a val/ metric.
VALIDATION_PREFIX = "val/"
EXAMPLE = "'hydra.sweeper.objectives={val/acc_best:maximize,artifact/adapter_bytes:minimize}'"
MEDIAN_PRUNER, NOP_PRUNER = "optuna.pruners.MedianPruner", "optuna.pruners.NopPruner"


class ObjectiveError(Exception):
    """A finished job whose metrics.json cannot answer the objectives: its trial fails with this message."""


def check_objectives(
    objectives: Any, direction: str, sampler_cfg: Mapping[str, Any], pruner_cfg: Mapping[str, Any]
) -> dict[str, str]:
    """The objectives as an ordered {metric: direction}, or a SweepConfigError naming the setting to fix."""
    if not isinstance(objectives, Mapping) or not objectives:
        raise SweepConfigError(
            f"hydra.sweeper.objectives={objectives!r}: name at least one metrics.json key and its direction, "
            f"e.g. {EXAMPLE}; or leave it unset (null) to optimise the task's optimized_metric"
        )
    for metric, goal in objectives.items():
        if goal not in DIRECTIONS:
            raise SweepConfigError(f"hydra.sweeper.objectives.{metric}={goal!r}: use maximize or minimize")
    if direction != "maximize":
        raise SweepConfigError(
            f"hydra.sweeper.direction={direction} is set beside hydra.sweeper.objectives, where each metric "
            "carries its own direction: drop hydra.sweeper.direction"
        )
    if sampler_cfg.get("_target_") == CMAES_TARGET and len(objectives) > 1:
        others = ", ".join(name for name in SAMPLERS if SAMPLERS[name]["_target_"] != CMAES_TARGET)
        raise SweepConfigError(
            f"hydra/sweeper/sampler=cmaes optimises one objective; hydra.sweeper.objectives names {len(objectives)}. "
            f"Use another sampler ({others})"
        )
    installed = optuna_version() or (0, 0)
    if sampler_cfg.get("_target_") == GP_TARGET and len(objectives) > 1 and installed < GP_MULTI_OBJECTIVE_SINCE:
        raise SweepConfigError(
            f"hydra/sweeper/sampler=gp takes several objectives from Optuna 4.4 on; this one is "
            f"{'.'.join(map(str, installed))}. Upgrade Optuna or use tpe or nsgaii"
        )
    median_rule_settings(pruner_cfg)  # refuses a pruner that judges one objective
    return {str(metric): str(goal) for metric, goal in objectives.items()}


def median_rule_settings(pruner_cfg: Mapping[str, Any]) -> dict[str, int] | None:
    """The median rule's settings (pruning.py) from hydra/sweeper/pruner=median; None for nop.

    Optuna's pruners judge one objective (trial.should_prune refuses several), so a study of
    `objectives` prunes by lora_lab's own rule, configured through the median option."""
    target = pruner_cfg.get("_target_")
    if target == NOP_PRUNER:
        return None
    if target != MEDIAN_PRUNER:
        raise SweepConfigError(
            f"hydra.sweeper.pruner._target_={target}: with hydra.sweeper.objectives the trials are pruned by "
            "lora_lab's median rule on the first objective (Optuna's pruners judge a single objective). "
            "Use hydra/sweeper/pruner=median (its n_startup_trials, n_warmup_steps) or hydra/sweeper/pruner=nop"
        )
    return {
        "n_startup_trials": int(pruner_cfg.get("n_startup_trials", 5)),
        "n_warmup_steps": int(pruner_cfg.get("n_warmup_steps", 0)),
    }


def prunes_first_objective(objectives: Mapping[str, str]) -> bool:
    """Is the first objective a metric the job logs at each validation (val/...)? Else nothing is pruned."""
    return next(iter(objectives)).startswith(VALIDATION_PREFIX)


def signature_entry(objectives: Mapping[str, str]) -> list[list[str]]:
    """The objectives as the study signature stores them: pairs, so that their order counts (JSON dicts
    compare equal in any order, and the order is the study's directions)."""
    return [[metric, goal] for metric, goal in objectives.items()]


def objective_values(job_dir: Path, objectives: Mapping[str, str]) -> list[float]:
    """The objectives' values in the finished job's metrics.json, in order; ObjectiveError if one is
    missing or no number (nan fails a trial, as the job returning nan does with one objective)."""
    job = answering_job(job_dir)
    if not job.is_finished:
        raise ObjectiveError(
            f"{job.metrics_path} does not exist, so hydra.sweeper.objectives cannot be read (status.json in "
            f"{job_dir} says why: e.g. a duplicate of a job still running)"
        )
    metrics = job.metrics()
    if missing := [metric for metric in objectives if metric not in metrics]:
        raise ObjectiveError(
            f"{job.metrics_path} lacks {', '.join(missing)} (hydra.sweeper.objectives); its keys: "
            f"{', '.join(sorted(metrics))}"
        )
    values = []
    for metric in objectives:
        value = metrics[metric]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ObjectiveError(f"{job.metrics_path} gives {metric}={value!r}: an objective must be a number")
        values.append(float(value))
    return values


def answering_job(job_dir: Path) -> JobDir:
    """The job whose files answer for `job_dir`: itself, or the job it found repeating its config
    (status.json `duplicate`: it trained nothing and holds no metrics.json or model)."""
    job = JobDir(job_dir)
    status = job.status() or {}
    if status.get("state") == "duplicate" and status.get("duplicate_of"):
        return JobDir(Path(status["duplicate_of"]))
    return job


def pareto_front(study: optuna.Study, objectives: Mapping[str, str]) -> dict[str, Any]:
    """best_trial.json of a study of several objectives: its Pareto front (study.best_trials: no
    other COMPLETE trial is at least as good on every objective and better on one), one entry per
    job that trained, by trial number. A trial answered from a job already listed (the sweeper's
    repeat of its params, or a job that found its config trained) is left out: same job, same values."""
    front: list[dict[str, Any]] = []
    seen: set[str | None] = set()
    for trial in sorted(study.best_trials, key=lambda t: t.number):
        job_dir = trial.user_attrs.get(JOB_DIR_ATTR)
        job_dir = str(answering_job(Path(job_dir)).path) if job_dir else None
        if job_dir is not None and job_dir in seen:
            continue
        seen.add(job_dir)
        values = dict(zip(objectives, trial.values))
        front.append({"number": trial.number, "values": values, "params": trial.params, "job_dir": job_dir})
    return {"objectives": dict(objectives), "pareto_front": front}
