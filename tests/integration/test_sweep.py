"""Optuna sweeps end to end as a user runs them: subprocesses, the real Hydra launcher, tiny jobs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from lora_lab.artifacts import read_json
from lora_lab.sweeper.storage import RETRY_OF_ATTR, SURPLUS_ATTR

ROOT = Path(__file__).resolve().parents[2]
# Seconds per job: a tiny random BERT, two training batches, one validation and one test batch.
TINY_JOB = [
    "backbone=tiny_bert",
    "stack=none",  # the TF-IDF stack has its own tests (tests/unit/test_stack.py)
    "dataset=b2b_sales_notes",
    "dataset.n_per_class=20",
    "data.batch_size=16",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
]
# A dead worker's trial is retried 2 s after its last heartbeat (the defaults wait 90 s).
FAST_HEARTBEAT = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"]
# Workers that never die: a 2 s grace would let a beat delayed by the other worker's SQLite write
# lock (it waits up to 60 s) pass for a dead worker, and retry a trial that is still running.
LIVE_HEARTBEAT = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=60"]
SEARCH = ["hydra/sweeper=lora_lab_optuna", "regime.learning_rate=tag(log, interval(1e-4, 1e-2))", "rank=choice(4,8)"]


def _command(sweep: Path, *args: str, heartbeat: list[str] = FAST_HEARTBEAT) -> list[str]:
    return [sys.executable, "-m", "lora_lab.train", "-m", *args, *TINY_JOB, *heartbeat, f"hydra.sweep.dir={sweep}"]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _study(sweep: Path) -> optuna.Study:
    info = read_json(sweep / "study.json")
    return optuna.load_study(study_name=info["study_name"], storage=info["storage"])


def _job_dirs(sweep: Path) -> dict[int, Path]:
    return {int(p.name): p for p in sweep.iterdir() if p.name.isdigit()}


def _assert_each_job_dir_is_its_trial(sweep: Path) -> None:
    for number, job_dir in _job_dirs(sweep).items():
        assert OmegaConf.load(job_dir / ".hydra" / "config.yaml").trial.number == number


def test_a_killed_sweep_resumes_without_rerunning_a_finished_trial(tmp_path: Path):
    sweep = tmp_path / "sweep"
    command = _command(sweep, *SEARCH, "trainer.max_epochs=1", "hydra.sweeper.n_trials=3")
    # Its own process group, so the kill below reaches only this sweep.
    worker = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while not (sweep / "1" / "status.json").exists():  # trial 0 finished, trial 1's job running
        assert worker.poll() is None and time.monotonic() < deadline, "the sweep ended before its second job started"
        time.sleep(0.2)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    assert [t.state for t in _study(sweep).trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    first_metrics = (sweep / "0" / "metrics.json").stat().st_mtime_ns

    _run(command)  # the same command again

    trials = _study(sweep).trials
    assert len(trials) == 4 and sum(t.state == TrialState.COMPLETE for t in trials) == 3
    # The killed trial is FAIL, its job's status.json says why, and its params ran again as a new trial.
    assert trials[1].state == TrialState.FAIL
    assert read_json(sweep / "1" / "status.json")["state"] == "failed"
    (retry,) = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == 1]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[1].params
    # The finished trial was not re-run: one job dir per trial, trial 0's untouched.
    assert sorted(_job_dirs(sweep)) == [0, 1, 2, 3]
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == first_metrics
    assert sum((d / "metrics.json").exists() for d in _job_dirs(sweep).values()) == 3
    _assert_each_job_dir_is_its_trial(sweep)
    # The report shows the interrupted trial as failed, with its job's reason, and the retry beside it.
    report = subprocess.run(
        [sys.executable, "-m", "lora_lab.report", str(sweep)], cwd=ROOT, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr[-2000:]
    # The jobs table is the report's first to name a job (later ones, e.g. jobs the kill left without a
    # provenance.json when it struck between status.json and provenance.json, name them again).
    rows: dict[str, str] = {}
    for line in (sweep / "report" / "report.md").read_text().splitlines():
        if line.startswith("| ") and (name := line.split("|")[1].strip()) in {"0", "1", "2", "3"}:
            rows.setdefault(name, line)
    assert "1 FAIL" in rows["1"] and "failed" in rows["1"]
    assert "COMPLETE" in rows[str(retry.number)] and "COMPLETE" in rows["0"]

    assert read_json(sweep / "study.json") == {
        "storage": f"sqlite:///{sweep}/optuna.db",
        "study_name": "lora_lab",
        "direction": "maximize",
        "optimized_metric": "val/acc_best",
    }
    best = read_json(sweep / "best_trial.json")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert best["value"] == max(t.value for t in complete)
    assert best["params"] == trials[best["number"]].params and set(best["params"]) == {"regime.learning_rate", "rank"}


def test_the_pruner_stops_a_trial_early_and_the_study_records_it_pruned(tmp_path: Path):
    sweep = tmp_path / "sweep"
    # The real LoRA search, shrunk; a tiny random model never reaches 0.99 accuracy, so the
    # threshold pruner stops the trial at its first chance: after validation step 1 (epoch 2 of 3).
    _run(
        _command(
            sweep,
            "hparams_search=lora_lr_rank",
            "trainer.max_epochs=3",
            "hydra.sweeper.n_trials=1",
            "hydra/sweeper/pruner=threshold",
            "hydra.sweeper.pruner.lower=0.99",
            "hydra.sweeper.pruner.n_warmup_steps=1",
        )
    )
    (trial,) = _study(sweep).trials
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [0, 1]
    job = sweep / "0"
    assert read_json(job / "status.json")["state"] == "pruned"
    metrics = read_json(job / "metrics.json")
    assert (metrics["epochs"], metrics["trial/pruned_at"]) == (2, 1)
    assert "test/acc" in metrics and (job / "adapter").is_dir()  # tested and saved all the same
    assert not (sweep / "best_trial.json").exists()  # no COMPLETE trial, no best


def test_two_workers_share_one_study_without_sharing_a_trial_or_a_dir(tmp_path: Path):
    sweep = tmp_path / "sweep"
    # Two processes, same sweep dir (so the same SQLite study), distinct sampler seeds (so their
    # random starts differ): each asks for trials until the study has 4.
    workers = [
        subprocess.Popen(
            _command(
                sweep,
                *SEARCH,
                "trainer.max_epochs=1",
                "hydra.sweeper.n_trials=4",
                f"hydra.sweeper.sampler.seed={seed}",
                heartbeat=LIVE_HEARTBEAT,
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=900)
        assert worker.returncode == 0, stderr[-3000:]

    asked = _study(sweep).trials
    # Both workers can see the last slot free and both ask for it: the later trial gives way, closed
    # unrun as a surplus FAIL with no job dir. Exactly n_trials train, however the race falls.
    trials = [t for t in asked if SURPLUS_ATTR not in t.user_attrs]
    surplus = [t for t in asked if SURPLUS_ATTR in t.user_attrs]
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials), asked
    assert len(surplus) <= 1 and all(t.state == TrialState.FAIL and t.number > 3 for t in surplus), asked
    assert sorted(_job_dirs(sweep)) == [t.number for t in trials]
    _assert_each_job_dir_is_its_trial(sweep)
    # Both workers ran trials: a job's hydra.yaml keeps the overrides of the worker that launched it.
    seeds = {
        override
        for job_dir in _job_dirs(sweep).values()
        for override in OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.overrides.hydra
        if override.startswith("hydra.sweeper.sampler.seed=")
    }
    assert seeds == {"hydra.sweeper.sampler.seed=1", "hydra.sweeper.sampler.seed=2"}


def test_a_trial_repeating_a_running_trials_params_takes_its_outcome_instead_of_training(tmp_path: Path):
    # One possible config, two trials per launcher batch: the second repeats the first while it is
    # (for a parallel launcher) still running. It must wait for it, not race it with a second job.
    sweep = tmp_path / "sweep"
    _run(
        _command(
            sweep,
            "hydra/sweeper=lora_lab_optuna",
            "hydra/sweeper/sampler=random",
            "rank=choice(4)",
            "trainer.max_epochs=1",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2",
        )
    )
    first, second = _study(sweep).trials
    assert first.state == second.state == TrialState.COMPLETE and second.value == first.value
    assert second.user_attrs["duplicate_of"] == first.number
    assert sorted(_job_dirs(sweep)) == [first.number]


def test_failed_trials_are_recorded_and_the_sweep_stops_past_the_failure_rate(tmp_path: Path):
    # learning_rate=-1 fails in the job's config check, before any model loads; 1e-3 trains. The
    # random sampler's seed 42 draws -1, 1e-3, 1e-3, -1.
    search = [
        "hydra/sweeper=lora_lab_optuna",
        "hydra/sweeper/sampler=random",
        "regime.learning_rate=choice(1e-3,-1.0)",
        "trainer.max_epochs=1",
        "hydra.sweeper.n_trials=4",
    ]
    tolerant = tmp_path / "tolerant"
    _run(_command(tolerant, *search, "hydra.sweeper.max_failure_rate=1.0"))
    trials = _study(tolerant).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 4 and failed and len(complete) >= 2, "seed 42 draws both values, 1e-3 at least twice"
    for trial in failed:
        assert trial.params["regime.learning_rate"] == -1.0
        assert trial.user_attrs["error"].startswith("ConfigError: regime.learning_rate=-1.0")
    # The first 1e-3 trial trained; the sampler's repeats of it were answered from it, not trained again.
    first, *repeats = complete
    assert all(t.user_attrs["duplicate_of"] == first.number and t.value == first.value for t in repeats)
    assert sorted(_job_dirs(tolerant)) == sorted(t.number for t in [first, *failed])

    strict = tmp_path / "strict"
    proc = subprocess.run(
        _command(strict, *search, "hydra.sweeper.max_failure_rate=0.0"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode != 0 and "more than hydra.sweeper.max_failure_rate=0.0" in proc.stderr
    states = [t.state for t in _study(strict).trials]
    assert states[-1] == TrialState.FAIL and TrialState.FAIL not in states[:-1]  # stopped at the first failure


def test_seeds_train_the_finalists_again_and_the_report_gives_their_intervals(tmp_path: Path):
    """hydra.sweeper.seeds=2: both trials of a two-rank grid run again on seed 43, beside them; the report
    groups each trial with its reseed job (2 seeds, a t interval) and pairs the winner with the runner-up."""
    sweep = tmp_path / "sweep"
    grid = ["hydra/sweeper=lora_lab_optuna", "hydra/sweeper/sampler=bruteforce", "rank=choice(4,8)"]
    _run(_command(sweep, *grid, "hydra.sweeper.n_trials=2", "hydra.sweeper.seeds=2"))
    assert sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").exists()) == [
        "0",
        "0-seed43",
        "1",
        "1-seed43",
    ]
    for number in (0, 1):
        trial_cfg = OmegaConf.load(sweep / str(number) / ".hydra" / "config.yaml")
        reseed_cfg = OmegaConf.load(sweep / f"{number}-seed43" / ".hydra" / "config.yaml")
        assert (trial_cfg.seed, reseed_cfg.seed) == (42, 43) and reseed_cfg.rank == trial_cfg.rank
        assert "trial" not in reseed_cfg  # a reseed job is no Optuna trial
    assert len(_study(sweep).trials) == 2
    report = subprocess.run(
        [sys.executable, "-m", "lora_lab.report", str(sweep)], cwd=ROOT, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr[-2000:]
    text = (sweep / "report" / "report.md").read_text()
    # Two configurations of two seeds each, each with a 95% interval (mean ± half-width), and the paired test.
    config_rows = [line for line in text.splitlines() if line.startswith("| ") and "± " in line and "(2)" in line]
    assert len(config_rows) >= 2, text[:3000]
    assert re.search(r"(beats|loses to|within noise of) .*paired bootstrap over \d+ test rows, 2 and 2 seed\(s\)", text)
    # The same command again: nothing left to train.
    rerun = _run(_command(sweep, *grid, "hydra.sweeper.n_trials=2", "hydra.sweeper.seeds=2"))
    assert "to 2 seeds each: 2 jobs, 2 finished before, 0 to run here" in rerun.stdout + rerun.stderr
