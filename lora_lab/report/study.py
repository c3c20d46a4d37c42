"""The Optuna study of a sweep (named by its study.json): trial states per job, history, parameter importances.

study.json = {"storage": "sqlite:///.../optuna.db", "study_name": ..., "direction": ..., "optimized_metric": ...}.
A trial belongs to the job dir named by its user attribute `job_dir` when the sweeper sets it,
else to the job whose number is the trial number (Hydra numbers a sweep's jobs in the order
the sweeper asks for trials, and Optuna numbers trials the same way).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lora_lab.artifacts import read_json
from lora_lab.report.collect import JobRow
from lora_lab.report.errors import ReportError
from lora_lab.sweeper.storage import JOB_DIR_ATTR, SURPLUS_ATTR, journal_path, open_storage

STUDY_FILE = "study.json"
SQLITE_PREFIX = "sqlite:///"


@dataclass
class SweepStudy:
    study: optuna.Study
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def metric(self) -> str:
        """What the study optimised (a metrics.json key): a label for the plots."""
        return str(self.spec.get("optimized_metric", "objective value"))

    @property
    def maximize(self) -> bool:
        """The (first) objective's direction: a multi-objective study has one per objective."""
        return self.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE

    @property
    def multi_objective(self) -> bool:
        return len(self.study.directions) > 1

    @property
    def trials(self) -> list[FrozenTrial]:
        """The study's trials, less the surplus asks that workers closed unrun (sweeper.py)."""
        return [t for t in self.study.get_trials(deepcopy=False) if SURPLUS_ATTR not in t.user_attrs]

    def job_dirs(self) -> list[Path]:
        """The job dirs the study's trials ran in: with several workers, in several sweep dirs."""
        return sorted({Path(str(t.user_attrs[JOB_DIR_ATTR])) for t in self.trials if JOB_DIR_ATTR in t.user_attrs})

    @property
    def completed(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE and t.values is not None]

    def state_counts(self) -> dict[str, int]:
        return dict(Counter(t.state.name.lower() for t in self.trials))

    def trial_of(self, job_name: str) -> FrozenTrial | None:
        return next((t for t in self.trials if _job_name(t) == job_name), None)

    def importances(self) -> tuple[dict[str, float], str]:
        """Optuna's parameter importances (its default evaluator, PED-ANOVA) and a note on what they rest on.

        They need two completed trials and a parameter that took two values; below that the
        evaluator still returns numbers (an even split), which would mislead, so none are given.
        """
        completed = self.completed
        if len(completed) < 2:
            return {}, f"Parameter importances need at least 2 completed trials; this study has {len(completed)}."
        varying = sorted(
            {k for t in completed for k in t.params if len({repr(u.params.get(k)) for u in completed}) > 1}
        )
        if not varying:
            return (
                {},
                "Parameter importances need a parameter that took two values; every completed trial used the same.",
            )
        # A multi-objective study needs a target: the first objective, what the plots show. PED-ANOVA
        # takes a target's low values as the good ones, so a maximised objective is negated.
        target = None
        if self.multi_objective:
            target = (lambda t: -first_value(t)) if self.maximize else first_value
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")  # the negation above
            importances = optuna.importance.get_param_importances(self.study, params=varying, target=target)
        return importances, (
            f"Importances by PED-ANOVA (Optuna's default evaluator) for {self.metric} over {len(completed)} "
            f"completed trials and the {len(varying)} parameters that varied; with few trials they are rough."
        )


def load_study(sweep_dir: Path) -> SweepStudy | None:
    """The study named by sweep_dir/study.json, or None for a sweep without one (a plain multirun)."""
    path = sweep_dir / STUDY_FILE
    if not path.exists():
        return None
    spec = read_json(path)
    missing = [k for k in ("storage", "study_name") if k not in spec]
    if missing:
        raise ReportError(f"{path} lacks {', '.join(missing)}: it must name the Optuna storage and the study_name")
    storage = str(spec["storage"])
    # optuna.load_study on a missing SQLite or journal file would create an empty one there: check first.
    file = storage[len(SQLITE_PREFIX) :] if storage.startswith(SQLITE_PREFIX) else journal_path(storage)
    if file is not None and not Path(file).is_file():
        raise ReportError(
            f"{path} names the storage {storage}, but {file} does not exist "
            f"(a relative SQLite path resolves against the current dir, here {Path.cwd()}): run the report "
            "from the dir the sweep ran in, or write an absolute path into study.json"
        )
    try:
        study = optuna.load_study(study_name=str(spec["study_name"]), storage=open_storage(storage))
    except KeyError as err:
        raise ReportError(f"{path}: the storage {storage} holds no study named {spec['study_name']!r}") from err
    return SweepStudy(study, spec)


def attach_trials(jobs: list[JobRow], study: SweepStudy) -> None:
    """Name each job's trial; a trial the study pruned makes its job `pruned` whatever status.json says."""
    for job in jobs:
        trial = study.trial_of(job.name)
        if trial is None:
            continue
        job.trial = f"{trial.number} {trial.state.name}"
        if trial.state == TrialState.PRUNED:
            job.state = "pruned"


def first_value(trial: FrozenTrial) -> float:
    """The trial's (first) objective value: `value` of a one-objective trial, `values[0]` of any."""
    return trial.values[0]


def _job_name(trial: FrozenTrial) -> str:
    return Path(str(trial.user_attrs[JOB_DIR_ATTR])).name if JOB_DIR_ATTR in trial.user_attrs else str(trial.number)
