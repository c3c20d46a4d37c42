"""Seeds for a sweep's finalists (hydra.sweeper.seeds, reseed_top_k): which trials run again, with
which seeds, in which dirs; resume, claims between workers, failures, and the settings' errors.

The sweeps run the real OptunaSweeper on a real SQLite study; a fake launcher writes each job dir
as lora_lab.train does (status.json, metrics.json), and its metrics depend on the seed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from lora_lab.errors import ConfigError
from lora_lab.job.dir import JobDir
from lora_lab.sweeper import reseed
from lora_lab.sweeper import sweeper as sweeper_module
from lora_lab.sweeper.config import PRUNERS, SAMPLERS
from lora_lab.sweeper.storage import open_storage
from lora_lab.sweeper.sweeper import OptunaSweeper, SweepFailedError
from tests.unit.test_sweeper_objectives import NoHeartbeat

SPACE = {"regime": "choice(lora, ia3)", "rank": "choice(4, 8)"}
OBJECTIVES = {"val/acc_best": "maximize", "artifact/adapter_bytes": "minimize"}
# val/acc_best by (regime, rank): LoRA r=8 best, LoRA r=4 second, (IA)^3 last but smallest; the
# trial of (IA)^3 r=8 (trial 3) is answered by r=4's job (trial 2), as a real sweep's would be.
ACC = {("lora", 8): 0.88, ("lora", 4): 0.84, ("ia3", 4): 0.70, ("ia3", 8): 0.70}
BYTES = {("lora", 8): 8000, ("lora", 4): 4000, ("ia3", 4): 300, ("ia3", 8): 300}

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


class SeedLauncher:
    """Writes each job dir as a finished job: metrics of its params, shifted by its seed."""

    def __init__(self, sweep_dir: Path, fail: set[str] = frozenset()):
        self.sweep_dir, self.fail = sweep_dir, set(fail)
        self.launched: list[str] = []
        self.overrides: dict[str, list[str]] = {}

    def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        returns = []
        for overrides in job_overrides:
            given = dict(o.split("=", 1) for o in overrides)
            name, key = given["hydra.sweep.subdir"], (given["regime"], int(given["rank"]))
            seed = int(given.get("seed", 42))
            self.launched.append(name)
            self.overrides[name] = list(overrides)
            job = JobDir(self.sweep_dir / name)
            job.path.mkdir(parents=True, exist_ok=True)
            if name in self.fail:
                job.write_status({"state": "failed", "error": "boom"})
                returns.append(
                    JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=RuntimeError("boom"))
                )
                continue
            twin = self.sweep_dir / "2"  # (IA)^3 reads no rank: r=8 is the job of r=4, as JobRecord finds
            if key == ("ia3", 8) and seed == 42 and JobDir(twin).is_finished:
                job.write_status({"state": "duplicate", "duplicate_of": str(twin)})
                returns.append(JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=None))
                continue
            acc = ACC[key] + (seed - 42) * 0.001
            job.write_status({"state": "complete"})
            job.write_metrics({"val/acc_best": acc, "artifact/adapter_bytes": BYTES[key]})
            returns.append(JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=acc))
        return returns


@pytest.fixture(autouse=True)
def _no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweeper_module, "Heartbeat", NoHeartbeat)


def _sweeper(
    sweep_dir: Path, launcher: SeedLauncher, objectives: dict | None = OBJECTIVES, **settings
) -> OptunaSweeper:
    sweeper = OptunaSweeper(
        params=OmegaConf.create(settings.pop("params", SPACE)),
        direction="maximize",
        n_trials=settings.pop("n_trials", 4),
        n_jobs=1,
        storage=None,
        study_name="s",
        sampler=OmegaConf.create(SAMPLERS["random"]),
        pruner=OmegaConf.create(PRUNERS["nop"]),
        max_failure_rate=1.0,
        heartbeat_interval=1,
        grace_period=2,
        objectives=OmegaConf.create(objectives) if objectives is not None else None,
        **settings,
    )
    sweeper.sweep_dir, sweeper.optimized_metric = sweep_dir, "val/acc_best"
    sweeper.config = OmegaConf.create({"seed": 42})
    sweeper.launcher = launcher
    sweeper.validate_batch_is_legal = lambda batch: None
    return sweeper


def _every_combination(sweep_dir: Path, objectives: dict | None = OBJECTIVES) -> None:
    """Trials 0-3: LoRA r=8, LoRA r=4, (IA)^3 r=4, (IA)^3 r=8, whatever the sampler."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    directions = list(objectives.values()) if objectives else ["maximize"]
    storage = open_storage(f"sqlite:///{sweep_dir}/optuna.db")
    study = optuna.create_study(storage=storage, study_name="s", directions=directions, load_if_exists=True)
    for regime, rank in ACC:
        study.enqueue_trial({"regime": regime, "rank": rank})


def test_the_front_runs_again_on_the_next_seeds_beside_its_trials(tmp_path: Path):
    sweep = tmp_path / "sweep"
    _every_combination(sweep)
    launcher = SeedLauncher(sweep)
    _sweeper(sweep, launcher, seeds=3)._sweep([])
    # The front of (acc max, bytes min): LoRA r=8, LoRA r=4 and (IA)^3, whose trials 2 and 3 are one job.
    reseeded = ["0-seed43", "0-seed44", "1-seed43", "1-seed44", "2-seed43", "2-seed44"]
    assert launcher.launched == ["0", "1", "2", "3", *reseeded]
    assert "seed=44" in launcher.overrides["2-seed44"] and "regime=ia3" in launcher.overrides["2-seed44"]
    assert not any(o.startswith("++trial.") for o in launcher.overrides["0-seed43"])  # not an Optuna trial
    study = optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{sweep}/optuna.db"))
    assert len(study.trials) == 4  # the sampler never sees the reseed jobs
    assert sorted(t.number for t in study.best_trials) == [0, 1, 2, 3]  # 3 is 2's job: not reseeded twice
    assert not list(sweep.glob("*.claim"))


def test_reseed_top_k_keeps_the_best_of_the_front_by_the_first_objective(tmp_path: Path):
    sweep = tmp_path / "sweep"
    _every_combination(sweep)
    launcher = SeedLauncher(sweep)
    _sweeper(sweep, launcher, reseed_top_k=2)._sweep([])  # seeds unset: 3
    assert launcher.launched[4:] == ["0-seed43", "0-seed44", "1-seed43", "1-seed44"]


def test_one_objective_reseeds_its_best_trials_once_each_whatever_their_duplicates(tmp_path: Path):
    sweep = tmp_path / "sweep"
    _every_combination(sweep, objectives=None)
    storage = open_storage(f"sqlite:///{sweep}/optuna.db")
    optuna.load_study(study_name="s", storage=storage).enqueue_trial({"regime": "lora", "rank": 8})  # trial 4
    launcher = SeedLauncher(sweep)
    _sweeper(sweep, launcher, objectives=None, n_trials=5, seeds=2, reseed_top_k=2)._sweep([])
    # Trial 4 repeats trial 0's params (answered from it): LoRA r=8 is one finalist, trained by trial 0.
    assert launcher.launched == ["0", "1", "2", "3", "0-seed43", "1-seed43"]


def test_a_rerun_skips_finished_reseed_jobs_and_retries_a_failed_one(tmp_path: Path):
    sweep = tmp_path / "sweep"
    _every_combination(sweep)
    first = SeedLauncher(sweep, fail={"1-seed43"})
    with pytest.raises(
        SweepFailedError,
        match=r"(?s)1 of 3 reseed jobs failed:\n.*1-seed43: RuntimeError: boom.*re-run the same",
    ):
        _sweeper(sweep, first, seeds=2)._sweep([])
    again = SeedLauncher(sweep)
    _sweeper(sweep, again, seeds=2)._sweep([])
    assert again.launched == ["1-seed43"]  # the study is done and 0-seed43, 2-seed43 finished
    assert JobDir(sweep / "1-seed43").is_finished
    more = SeedLauncher(sweep)
    _sweeper(sweep, more, seeds=3)._sweep([])  # a third seed later: only the new jobs
    assert more.launched == ["0-seed44", "1-seed44", "2-seed44"]


def test_a_job_claimed_by_a_live_worker_is_left_to_it_and_a_dead_ones_is_taken_over(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    jobs = [reseed.ReseedJob(0, {"rank": 8}, 43), reseed.ReseedJob(0, {"rank": 8}, 44), reseed.ReseedJob(1, {}, 43)]
    host = os.uname().nodename
    (sweep / "0-seed43.claim").write_text(json.dumps({"host": host, "pid": os.getppid()}))  # alive
    dead = _dead_pid()
    (sweep / "0-seed44.claim").write_text(json.dumps({"host": host, "pid": dead}))
    (sweep / "1-seed43.claim").write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    assert [j.name for j in reseed.to_run(sweep, jobs)] == ["0-seed44"]
    assert json.loads((sweep / "0-seed44.claim").read_text())["pid"] == os.getpid()
    # a finished job is never claimed
    done = JobDir(sweep / "1-seed43")
    done.path.mkdir()
    done.write_status({"state": "complete"})
    done.write_metrics({"val/acc_best": 0.5})
    (sweep / "1-seed43.claim").unlink()
    assert reseed.to_run(sweep, jobs[2:]) == []


def _dead_pid() -> int:
    """A pid that no process has: a child that has exited and been reaped."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"seeds": 0}, r"hydra.sweeper.seeds=0: must be a positive integer"),
        ({"seeds": "3"}, r"hydra.sweeper.seeds='3': must be a positive integer"),
        ({"reseed_top_k": -1}, r"hydra.sweeper.reseed_top_k=-1: must be a positive integer"),
        ({"seeds": 1, "reseed_top_k": 2}, r"reseed_top_k=2 with hydra.sweeper.seeds=1 trains nothing again"),
        ({"seeds": 2, "params": {**SPACE, "seed": "choice(1, 2)"}}, r"samples `seed` itself"),
    ],
)
def test_reseed_settings_are_refused_naming_the_key_and_the_fix(tmp_path: Path, settings: dict, message: str):
    sweeper = _sweeper(tmp_path, SeedLauncher(tmp_path), **settings)
    with pytest.raises(ConfigError, match=message):
        sweeper._check_settings()


def test_without_seeds_nothing_runs_again(tmp_path: Path):
    sweep = tmp_path / "sweep"
    _every_combination(sweep)
    launcher = SeedLauncher(sweep)
    _sweeper(sweep, launcher)._sweep([])
    assert launcher.launched == ["0", "1", "2", "3"]
