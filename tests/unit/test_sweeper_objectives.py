"""Several objectives (hydra.sweeper.objectives): the study's directions, each trial's values read from
its job's metrics.json, failures that name the missing key, resume, duplicates, the Pareto front.

The sweeps run the real OptunaSweeper on a real SQLite study; a fake launcher stands in for the jobs
and writes each one's status.json and metrics.json as a finished lora_lab job does.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.study import StudyDirection
from optuna.trial import TrialState

from lora_lab.artifacts import read_json
from lora_lab.job.dir import JobDir
from lora_lab.sweeper import objectives as objectives_module
from lora_lab.sweeper import sweeper as sweeper_module
from lora_lab.sweeper.config import PRUNERS, SAMPLERS
from lora_lab.sweeper.objectives import ObjectiveError, objective_values
from lora_lab.sweeper.resume import SweepConfigError
from lora_lab.sweeper.storage import DUPLICATE_OF_ATTR, ERROR_ATTR, JOB_DIR_ATTR, open_storage
from lora_lab.sweeper.sweeper import OptunaSweeper
from tests.helpers import compose_train

OBJECTIVES = {"val/acc_best": "maximize", "latency/p50_ms": "minimize", "artifact/adapter_bytes": "minimize"}
SPACE = {"regime": "choice(lora, ia3)", "rank": "choice(4, 8)"}
LORA4, IA3_4, IA3_8, LORA8 = (
    {"regime": "lora", "rank": 4},
    {"regime": "ia3", "rank": 4},
    {"regime": "ia3", "rank": 8},
    {"regime": "lora", "rank": 8},
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _metrics(regime: str, rank: int) -> dict[str, float]:
    """What a job of these params measures; (IA)^3 reads no rank, so both its ranks are one job."""
    if regime == "ia3":
        return {"val/acc_best": 0.7, "latency/p50_ms": 9.0, "artifact/adapter_bytes": 300}
    return {"val/acc_best": {4: 0.84, 8: 0.88}[rank], "latency/p50_ms": 12.0, "artifact/adapter_bytes": 1000 * rank}


class FakeLauncher:
    """Launches no process: writes each trial's job dir as lora_lab.train would. A second (IA)^3 job
    records itself as a duplicate of the first (no metrics.json), as JobRecord does for a repeated config."""

    def __init__(self, sweep_dir: Path, drop: tuple[str, ...] = ()):
        self.sweep_dir, self.drop = sweep_dir, drop
        self.launched: list[int] = []
        self.overrides: list[list[str]] = []

    def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        returns = []
        for overrides in job_overrides:
            self.overrides.append(list(overrides))
            given = dict(o.split("=", 1) for o in overrides)
            number, regime, rank = int(given["hydra.sweep.subdir"]), given["regime"], int(given["rank"])
            self.launched.append(number)
            job = JobDir(self.sweep_dir / str(number))
            first_ia3 = next((d for d in sorted(self.sweep_dir.glob("*/ia3")) if d.parent != job.path), None)
            if regime == "ia3" and first_ia3 is not None:
                job.write_status({"state": "duplicate", "duplicate_of": str(first_ia3.parent)})
                value = JobDir(first_ia3.parent).metric("val/acc_best")
            else:
                metrics = {k: v for k, v in _metrics(regime, rank).items() if k not in self.drop}
                (job.path / regime).mkdir(parents=True)
                job.write_status({"state": "complete"})
                job.write_metrics(metrics)
                value = metrics.get("val/acc_best")
            returns.append(JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=value))
        return returns


class NoHeartbeat:
    """The heartbeat child process has tests of its own (test_sweeper_twins.py)."""

    def __init__(self, *args: object):
        pass

    def __enter__(self) -> NoHeartbeat:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def track(self, trials: list) -> None:
        pass

    def untrack(self, trials: list) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweeper_module, "Heartbeat", NoHeartbeat)


def _sweeper(
    sweep_dir: Path,
    objectives: dict | None = OBJECTIVES,
    n_trials: int = 3,
    sampler: str = "random",
    pruner: str = "median",
    direction: str = "maximize",
    launcher: FakeLauncher | None = None,
) -> OptunaSweeper:
    """The sweeper as Hydra builds and sets it up for a sweep of SPACE into sweep_dir."""
    sweeper = OptunaSweeper(
        params=OmegaConf.create(SPACE),
        direction=direction,
        n_trials=n_trials,
        n_jobs=1,
        storage=None,
        study_name="s",
        sampler=OmegaConf.create(SAMPLERS[sampler]),
        pruner=OmegaConf.create(PRUNERS[pruner]),
        max_failure_rate=1.0,
        heartbeat_interval=1,
        grace_period=2,
        objectives=OmegaConf.create(objectives) if objectives is not None else None,
    )
    sweeper.sweep_dir, sweeper.optimized_metric = sweep_dir, "val/acc_best"
    sweeper.launcher = launcher or FakeLauncher(sweep_dir)
    sweeper.validate_batch_is_legal = lambda batch: None  # no Hydra context to compose with here
    return sweeper


def _enqueue(sweep_dir: Path, *params: dict) -> None:
    """Trials the next asks take, in order, whatever the sampler (the study is created if new)."""
    directions = list(OBJECTIVES.values())
    storage = open_storage(f"sqlite:///{sweep_dir}/optuna.db")
    study = optuna.create_study(storage=storage, study_name="s", directions=directions, load_if_exists=True)
    for p in params:
        study.enqueue_trial(p)


def _study(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{sweep_dir}/optuna.db"))


def _first_run(sweep_dir: Path) -> OptunaSweeper:
    """Three trials: LoRA rank 4, (IA)^3 rank 4, (IA)^3 rank 8 (the job of rank 4 again)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    _enqueue(sweep_dir, LORA4, IA3_4, IA3_8)
    sweeper = _sweeper(sweep_dir)
    sweeper._sweep([])
    return sweeper


def test_each_trial_tells_the_objectives_of_its_jobs_metrics_json_in_order(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweeper = _first_run(sweep)
    study = _study(sweep)
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3 and sweeper.launcher.launched == [0, 1, 2]
    assert study.trials[0].values == [0.84, 12.0, 4000.0]
    assert study.trials[1].values == [0.7, 9.0, 300.0]
    # Trial 2's job found trial 1's config and wrote no metrics.json: its values are trial 1's.
    assert not (sweep / "2" / "metrics.json").exists() and study.trials[2].values == [0.7, 9.0, 300.0]
    # study.json: the first objective where old readers look for the one metric, then all of them in order.
    spec = read_json(sweep / "study.json")
    assert (spec["optimized_metric"], spec["direction"]) == ("val/acc_best", "maximize")
    assert list(spec["objectives"].items()) == list(OBJECTIVES.items())
    # No trial dominates another; trial 2 trained nothing (trial 1's job answered it): two jobs on the
    # front, each value under its metric's name.
    best = read_json(sweep / "best_trial.json")
    assert list(best["objectives"]) == list(OBJECTIVES)
    assert [(m["number"], m["job_dir"]) for m in best["pareto_front"]] == [(0, str(sweep / "0")), (1, str(sweep / "1"))]
    assert best["pareto_front"][0] == {
        "number": 0,
        "values": {"val/acc_best": 0.84, "latency/p50_ms": 12.0, "artifact/adapter_bytes": 4000.0},
        "params": LORA4,
        "job_dir": str(sweep / "0"),
    }


def test_a_job_whose_metrics_json_lacks_an_objective_fails_its_trial_naming_the_key(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _enqueue(sweep, LORA4)
    _sweeper(sweep, n_trials=1, launcher=FakeLauncher(sweep, drop=("latency/p50_ms",)))._sweep([])
    (trial,) = _study(sweep).trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[ERROR_ATTR] == (
        f"{sweep / '0' / 'metrics.json'} lacks latency/p50_ms (hydra.sweeper.objectives); "
        "its keys: artifact/adapter_bytes, val/acc_best"
    )
    assert not (sweep / "best_trial.json").exists()  # no COMPLETE trial, no front


def test_nan_fails_a_trial_and_inf_is_told_as_with_one_objective(tmp_path: Path):
    job = JobDir(tmp_path / "0")
    job.write_metrics({"val/acc_best": float("nan"), "latency/p50_ms": float("inf"), "artifact/adapter_bytes": 1})
    with pytest.raises(ObjectiveError, match="gives val/acc_best=nan: an objective must be a number"):
        objective_values(job.path, OBJECTIVES)
    assert objective_values(job.path, {"latency/p50_ms": "minimize"}) == [math.inf]
    with pytest.raises(ObjectiveError, match="does not exist"):
        objective_values(tmp_path / "1", OBJECTIVES)  # a job that never finished


def test_a_resumed_study_keeps_its_trials_and_answers_repeated_params_with_all_values(tmp_path: Path):
    sweep = tmp_path / "sweep"
    _first_run(sweep)
    written = {n: (sweep / str(n) / "metrics.json").stat().st_mtime_ns for n in (0, 1)}
    _enqueue(sweep, LORA4, LORA8)  # trial 3 repeats trial 0's params
    resumed = _sweeper(sweep, n_trials=5)
    resumed._sweep([])

    trials = _study(sweep).trials
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert resumed.launcher.launched == [4]  # the finished trials were kept, the repeat answered
    assert {n: (sweep / str(n) / "metrics.json").stat().st_mtime_ns for n in (0, 1)} == written
    assert trials[3].user_attrs[DUPLICATE_OF_ATTR] == 0 and trials[3].values == trials[0].values
    assert trials[3].user_attrs[JOB_DIR_ATTR] == str(sweep / "0")
    assert trials[4].values == [0.88, 12.0, 8000.0]
    # Trial 3 is trial 0's job again (and trial 2 trial 1's): each job on the front once.
    front = read_json(sweep / "best_trial.json")["pareto_front"]
    assert [m["number"] for m in front] == [0, 1, 4]


@pytest.mark.parametrize(
    "objectives,message",
    [
        (
            {"latency/p50_ms": "minimize", "val/acc_best": "maximize", "artifact/adapter_bytes": "minimize"},
            "this sweep optimises hydra.sweeper.objectives={latency/p50_ms:minimize,val/acc_best:maximize,",
        ),
        ({"val/acc_best": "maximize"}, "this sweep optimises hydra.sweeper.objectives={val/acc_best:maximize}"),
        (None, "this sweep optimises one objective, optimized_metric=val/acc_best (no hydra.sweeper.objectives)"),
    ],
    ids=["reordered", "fewer", "unset"],
)
def test_resuming_with_other_objectives_is_refused(tmp_path: Path, objectives: dict | None, message: str):
    sweep = tmp_path / "sweep"
    _first_run(sweep)
    with pytest.raises(SweepConfigError, match="study 's' optimises hydra.sweeper.objectives=") as err:
        _sweeper(sweep, objectives=objectives, n_trials=5)._sweep([])
    assert message in str(err.value) and "a new hydra.sweeper.study_name" in str(err.value)
    assert len(_study(sweep).trials) == 3  # nothing asked


def test_a_one_objective_study_refuses_a_resume_with_objectives(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    storage = open_storage(f"sqlite:///{sweep}/optuna.db")
    optuna.create_study(storage=storage, study_name="s", direction="maximize")
    optuna.load_study(study_name="s", storage=storage).enqueue_trial(LORA4)
    _sweeper(sweep, objectives=None, n_trials=1)._sweep([])
    assert _study(sweep).trials[0].value == 0.84  # one objective: the value the job returned
    stored = r"optimises one objective, optimized_metric=val/acc_best \(no hydra.sweeper.objectives\); this sweep"
    with pytest.raises(SweepConfigError, match=stored):
        _sweeper(sweep, n_trials=2)._sweep([])


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"objectives": {}}, "hydra.sweeper.objectives={}: name at least one metrics.json key and its direction"),
        (
            {"objectives": {"val/acc_best": "max"}},
            "hydra.sweeper.objectives.val/acc_best='max': use maximize or minimize",
        ),
        ({"direction": "minimize"}, "hydra.sweeper.direction=minimize is set beside hydra.sweeper.objectives"),
        ({"sampler": "cmaes"}, "hydra/sweeper/sampler=cmaes optimises one objective; hydra.sweeper.objectives names 3"),
        ({"pruner": "hyperband"}, "HyperbandPruner: with hydra.sweeper.objectives the trials are pruned by"),
    ],
    ids=["empty", "direction-typo", "direction-too", "cmaes", "hyperband"],
)
def test_objective_settings_are_refused_with_the_setting_and_the_fix(tmp_path: Path, settings: dict, message: str):
    sweeper = _sweeper(tmp_path, **settings)
    with pytest.raises(SweepConfigError) as err:
        sweeper._check_settings()
    assert message in str(err.value)


def test_cmaes_optimises_a_single_objective_given_as_objectives(tmp_path: Path):
    sweeper = _sweeper(tmp_path, objectives={"val/acc_best": "maximize"}, sampler="cmaes")
    sweeper._check_settings()
    assert sweeper.objectives == {"val/acc_best": "maximize"}


@pytest.mark.parametrize("sampler", ["nsgaii", "tpe", *(["gp"] if "gp" in SAMPLERS else [])])
def test_multi_objective_samplers_compose_with_objectives_on_the_command_line(tmp_path: Path, sampler: str):
    cfg = compose_train(
        tmp_path,
        [
            "hydra/sweeper=lora_lab_optuna",
            f"hydra/sweeper/sampler={sampler}",
            "hydra.sweeper.objectives={val/acc_best:maximize,latency/p50_ms:minimize}",
        ],
    )
    node = cfg.hydra.sweeper
    built = instantiate(node.sampler)
    assert type(built).__name__ == node.sampler._target_.rsplit(".", 1)[1] and node.sampler.seed == 42
    # The sweeper as Hydra builds it from the composed node: the objectives in their order.
    sweeper = OptunaSweeper(**{k: v for k, v in node.items() if k not in ("_target_", "_recursive_", "defaults")})
    sweeper._check_settings()
    assert sweeper.objectives == {"val/acc_best": "maximize", "latency/p50_ms": "minimize"}
    assert list(sweeper.objectives) == ["val/acc_best", "latency/p50_ms"]


def test_the_gp_option_exists_exactly_when_optuna_has_a_gp_sampler():
    assert ("gp" in SAMPLERS) == hasattr(optuna.samplers, "GPSampler")


def test_gp_with_several_objectives_is_refused_before_optuna_4_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sampler = {"_target_": "optuna.samplers.GPSampler", "seed": 42}
    monkeypatch.setattr(objectives_module, "optuna_version", lambda: (4, 3))
    with pytest.raises(SweepConfigError, match="gp takes several objectives from Optuna 4.4 on; this one is 4.3"):
        objectives_module.check_objectives(OBJECTIVES, "maximize", sampler, PRUNERS["median"])
    assert objectives_module.check_objectives({"val/acc_best": "maximize"}, "maximize", sampler, PRUNERS["nop"])
    monkeypatch.setattr(objectives_module, "optuna_version", lambda: (4, 4))
    assert list(objectives_module.check_objectives(OBJECTIVES, "maximize", sampler, PRUNERS["nop"])) == list(OBJECTIVES)


def test_a_first_objective_logged_at_no_validation_turns_pruning_off_with_one_warning(tmp_path: Path, caplog):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    latency_first = {"latency/p50_ms": "minimize", "val/acc_best": "maximize"}
    storage = open_storage(f"sqlite:///{sweep}/optuna.db")
    study = optuna.create_study(storage=storage, study_name="s", directions=list(latency_first.values()))
    study.enqueue_trial(LORA4)
    study.enqueue_trial(LORA8)
    sweeper = _sweeper(sweep, objectives=latency_first, n_trials=2)
    with caplog.at_level(logging.WARNING, logger=sweeper_module.__name__):
        sweeper._sweep([])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "latency/p50_ms, is not a validation metric" in warnings[0]
    assert not any("callbacks.optuna_pruning" in o for job in sweeper.launcher.overrides for o in job)
    assert [t.values for t in _study(sweep).trials] == [[12.0, 0.84], [12.0, 0.88]]


def test_a_validation_metric_first_is_reported_by_the_first_objective_pruning_callback(tmp_path: Path):
    sweeper = _first_run(tmp_path / "sweep")
    first_job = sweeper.launcher.overrides[0]
    assert "++callbacks.optuna_pruning._target_=lora_lab.sweeper.pruning.FirstObjectivePruning" in first_job
    assert "++callbacks.optuna_pruning.monitor=val/acc_best" in first_job


def test_study_json_and_best_trial_json_of_a_single_objective_sweep_are_unchanged(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    storage = open_storage(f"sqlite:///{sweep}/optuna.db")
    optuna.create_study(storage=storage, study_name="s", direction="maximize").enqueue_trial(LORA4)
    _sweeper(sweep, objectives=None, n_trials=1)._sweep([])
    assert read_json(sweep / "study.json") == {
        "storage": f"sqlite:///{sweep}/optuna.db",
        "study_name": "s",
        "direction": "maximize",
        "optimized_metric": "val/acc_best",
    }
    assert read_json(sweep / "best_trial.json") == {
        "number": 0,
        "value": 0.84,
        "params": LORA4,
        "job_dir": str(sweep / "0"),
    }
