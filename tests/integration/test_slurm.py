"""Sweeps submitted through submitit (hydra-submitit-launcher): to a real one-node SLURM cluster
started by the fixture (slurmctld + slurmd + munged), and to submitit's local executor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from lora_lab.artifacts import read_json
from tests.integration.test_sweep import ROOT, TINY_JOB, _job_dirs
from tests.services import Slurm, slurm, wait_for

# The shipped example (conf/hydra/launcher/slurm_cpu.yaml), sized for the fixture's one 2-CPU node.
ON_SLURM = [
    "hydra/launcher=slurm_cpu",
    "hydra.launcher.partition=debug",
    "hydra.launcher.timeout_min=10",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=null",
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Slurm]:
    with slurm() as running:
        yield running


def _sweep(sweep: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, list[str]]:
    """Start a multirun; return it and the command."""
    command = [
        sys.executable,
        "-m",
        "lora_lab.train",
        "-m",
        *args,
        *TINY_JOB,
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
    ]
    return subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ), command


def _slurm_jobs(cluster: Slurm, *args: str) -> set[str]:
    """JOBIDs in squeue's (running or pending) or sacct -c's (finished) listing."""
    return {line.split()[0] for line in cluster.run(*args).splitlines() if line.strip()}


def test_an_optuna_sweep_runs_its_trials_as_slurm_jobs(tmp_path: Path, cluster: Slurm):
    sweep = tmp_path / "sweep"
    # Three ranks, every one once (the brute-force grid), asked as one batch: one SLURM array of 3.
    worker, _ = _sweep(
        sweep,
        cluster.env,
        *ON_SLURM,
        "hydra/sweeper=lora_lab_optuna",
        "hydra/sweeper/sampler=bruteforce",
        "rank=choice(2,4,8)",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=3",
    )
    queued: set[str] = set()
    while worker.poll() is None:  # squeue lists the array's tasks while they wait or run
        queued |= _slurm_jobs(cluster, "squeue", "-h", "-r", "-o", "%i")
        time.sleep(0.3)
    assert worker.returncode == 0, worker.stderr.read()[-3000:]

    info = read_json(sweep / "study.json")
    trials = optuna.load_study(study_name=info["study_name"], storage=info["storage"]).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert sorted(t.params["rank"] for t in trials) == [2, 4, 8]
    assert sorted(_job_dirs(sweep)) == [0, 1, 2]
    # Each trial's job ran inside a SLURM array task, which its provenance, squeue and sacct name.
    slurm_jobs = [read_json(d / "provenance.json")["slurm_job"] for d in _job_dirs(sweep).values()]
    tasks, raw_ids = {j["array_task"] for j in slurm_jobs}, {j["id"] for j in slurm_jobs}
    assert len(tasks) == len(raw_ids) == 3 and all(tasks)
    for job_dir in _job_dirs(sweep).values():
        assert (job_dir / "metrics.json").exists() and read_json(job_dir / "status.json")["state"] == "complete"
        assert OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.job.id in tasks  # set by submitit
    assert queued & tasks, f"squeue never showed the trials' jobs {tasks} (saw {queued})"
    # sacct -c reads the job completion log (no slurmdbd here), which names jobs by their raw id.
    wait_for(
        lambda: raw_ids <= _slurm_jobs(cluster, "sacct", "-c", "-n", "-o", "JobID"),
        30,
        "sacct -c to list the finished jobs",
    )
    states = dict(line.split()[:2] for line in cluster.run("sacct", "-c", "-n", "-o", "JobID,State").splitlines())
    assert all(states[i] == "COMPLETED" for i in raw_ids), states


@pytest.mark.parametrize("launcher", ["submitit_slurm", "submitit_local"])
def test_a_plain_multirun_runs_through_submitit(tmp_path: Path, cluster: Slurm, launcher: str):
    sweep = tmp_path / "sweep"
    launch = (
        ON_SLURM if launcher == "submitit_slurm" else ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    )
    worker, _ = _sweep(sweep, cluster.env, *launch, "rank=2,4")
    _, stderr = worker.communicate(timeout=600)
    assert worker.returncode == 0, stderr[-3000:]
    jobs = _job_dirs(sweep)
    assert sorted(jobs) == [0, 1]
    assert sorted(OmegaConf.load(d / ".hydra" / "config.yaml").rank for d in jobs.values()) == [2, 4]
    assert all(read_json(d / "status.json")["state"] == "complete" for d in jobs.values())
    in_slurm = [read_json(d / "provenance.json")["slurm_job"] for d in jobs.values()]
    assert all(in_slurm) if launcher == "submitit_slurm" else not any(in_slurm)
