"""Which study a sweep runs: a new one, or the one it resumes; never one that ran another search."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from hydra.utils import instantiate

from lora_lab.artifacts import read_json
from lora_lab.errors import ConfigError
from lora_lab.job.dir import STATUS_FILE
from lora_lab.sweeper.storage import METRIC_ATTR, OBJECTIVES_ATTR, PRUNER_ATTR, SIGNATURE_ATTR, STUDY_FILE


class SweepConfigError(ConfigError):
    """A sweep that cannot start as configured; the message names the setting and the fix."""


def check_sweep_dir(sweep_dir: Path, url: str, study_name: str) -> None:
    """The sweep dir is this study's, or new: never one whose job dirs another study numbered."""
    study_file = sweep_dir / STUDY_FILE
    if study_file.exists():
        written = read_json(study_file)
        if (written["storage"], written["study_name"]) != (url, study_name):
            raise SweepConfigError(
                f"hydra.sweep.dir={sweep_dir} belongs to study {written['study_name']!r} in {written['storage']}, "
                f"not {study_name!r} in {url}. To resume it pass its hydra.sweeper.storage and study_name; "
                "to start a new study choose a new hydra.sweep.dir."
            )
    elif any(sweep_dir.glob(f"*/{STATUS_FILE}")):
        raise SweepConfigError(
            f"hydra.sweep.dir={sweep_dir} holds jobs of a multirun that was not this Optuna sweep; "
            "lora_lab never overwrites them. Choose a new hydra.sweep.dir."
        )


def open_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    direction: str | list[str],
    signature: dict[str, Any],
    sampler_cfg: dict[str, Any],
    pruner_cfg: dict[str, Any],
) -> optuna.Study:
    """Create the study, or load it to resume; refuse one whose direction(s), objectives or search
    (space, fixed overrides, metric: `signature`) differ from this sweep's. `direction`: one, or one
    per objective (hydra.sweeper.objectives, whose metrics and order `signature["objectives"]` holds)."""
    directions = [direction] if isinstance(direction, str) else list(direction)
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions, load_if_exists=True)
    stored = study.user_attrs.get(SIGNATURE_ATTR)
    if stored is not None and stored.get("objectives") != signature.get("objectives"):
        raise SweepConfigError(
            f"study {study_name!r} optimises {_objectives_text(stored)}; "
            f"this sweep optimises {_objectives_text(signature)}. "
            "Resume with the study's hydra.sweeper.objectives, or start a new study "
            "(a new hydra.sweeper.study_name, or a new hydra.sweep.dir)."
        )
    if (stored_directions := [d.name.lower() for d in study.directions]) != directions:
        if len(directions) == len(stored_directions) == 1:
            raise SweepConfigError(
                f"study {study_name!r} {stored_directions[0]}s, hydra.sweeper.direction={directions[0]}: "
                "use the study's direction, or a new hydra.sweeper.study_name"
            )
        raise SweepConfigError(
            f"study {study_name!r} has the directions {stored_directions}, this sweep {directions}: resume with "
            "the study's hydra.sweeper.objectives (or direction), or a new hydra.sweeper.study_name"
        )
    if stored is not None and stored != signature:
        raise SweepConfigError(
            f"study {study_name!r} was run with another search:\n  stored: {stored}\n  now:    {signature}\n"
            "Resume with the same search space, fixed overrides and optimized_metric, or start a new study "
            "(a new hydra.sweeper.study_name, or a new hydra.sweep.dir)."
        )
    study.set_user_attr(SIGNATURE_ATTR, signature)
    study.set_user_attr(METRIC_ATTR, signature["optimized_metric"])
    if "objectives" in signature:
        study.set_user_attr(OBJECTIVES_ATTR, signature["objectives"])  # the jobs' pruning reads the first
    study.set_user_attr(PRUNER_ATTR, pruner_cfg)  # the jobs build their pruner from it
    # optuna-dashboard and Optuna's plots label each objective by these names ("Objective 0" without).
    names = (
        [metric for metric, _ in signature["objectives"]]
        if "objectives" in signature
        else [signature["optimized_metric"]]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
    study.pruner = instantiate(pruner_cfg)
    study.sampler = shifted_sampler(sampler_cfg, offset=len(study.trials))
    return study


def _objectives_text(signature: dict[str, Any]) -> str:
    """What a signature optimises, in words: its objectives, or its one optimized_metric."""
    if (objectives := signature.get("objectives")) is None:
        return f"one objective, optimized_metric={signature['optimized_metric']} (no hydra.sweeper.objectives)"
    return "hydra.sweeper.objectives={" + ",".join(f"{metric}:{goal}" for metric, goal in objectives) + "}"


def shifted_sampler(sampler_cfg: dict[str, Any], offset: int) -> optuna.samplers.BaseSampler:
    """The configured sampler, its seed shifted by the trials already in the study: a resumed sweep
    must not replay the first run's random draws (same seed, same startup trials)."""
    cfg = dict(sampler_cfg)
    if cfg.get("seed") is not None and offset:
        # Mixed, not added: with seed + offset, a worker with seed 1 joining a study of one trial
        # draws exactly what a worker with seed 2 drew when it opened the study empty.
        cfg["seed"] = int(np.random.SeedSequence([int(cfg["seed"]), offset]).generate_state(1)[0])
    return instantiate(cfg)
