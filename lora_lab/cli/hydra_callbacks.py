"""Hydra callbacks that run before Hydra writes anything into a job dir."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lora_lab.auto.config import AUTO_SWEEPER_TARGET
from lora_lab.cli.errors import exit_with_error
from lora_lab.cli.run import is_ddp_worker
from lora_lab.job.dir import STATUS_FILE, JobDir
from lora_lab.job.record import fingerprint
from lora_lab.models.weight_names import checkpoint_bytes
from lora_lab.sweeper.config import SWEEPER_TARGET


class FinishedDirError(SystemExit):
    """Exits with the message. A SystemExit, because Hydra turns a callback's ordinary
    exceptions into warnings and carries on, which would overwrite the finished job."""


class RefuseFinishedDirs(Callback):
    """Stop a job from writing into the dir of a finished job.

    Hydra writes .hydra/config.yaml before the task runs, so the check must happen here, in
    on_run_start / on_multirun_start, not in train(): by then the old config is already gone.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if is_ddp_worker(config):  # re-run by Lightning into its rank 0's running job: see train.py
            return
        run_dir = Path(config.hydra.run.dir)
        if config.get("resume", False):
            check_resume(run_dir, config)
            return
        if JobDir(run_dir).is_finished:
            raise FinishedDirError(
                f"hydra.run.dir={run_dir} holds a finished job; lora_lab never overwrites one. "
                "Drop the hydra.run.dir override (each run gets a fresh timestamped dir) or choose a new dir."
            )
        if JobDir(run_dir).status_path.exists():
            raise FinishedDirError(
                f"hydra.run.dir={run_dir} holds a job that did not finish (killed or failed); lora_lab never "
                "overwrites one. Add resume=true to continue it from its last checkpoint, or choose a new dir."
            )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.sweeper._target_") in (SWEEPER_TARGET, AUTO_SWEEPER_TARGET):
            # lora_lab's Optuna sweeper resumes into its sweep dir: it names each job dir by trial
            # number, unique in its study, and itself refuses a dir another study numbered. The auto
            # search (lora_lab/auto/) reruns no finished job and refuses a dir of another search.
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        if any(sweep_dir.glob(f"*/{STATUS_FILE}")):
            raise FinishedDirError(
                f"hydra.sweep.dir={sweep_dir} holds jobs of an earlier multirun; lora_lab never overwrites them. "
                "Drop the hydra.sweep.dir override or choose a new dir."
            )


def check_resume(run_dir: Path, config: DictConfig) -> None:
    """resume=true: the dir must hold a job started with this config and not finished (a finished one
    is a no-op, exit 0). Checked before Hydra rewrites the dir's .hydra/ config."""
    job_dir = JobDir(run_dir)
    status = job_dir.status()
    if status is None:
        exit_with_error(
            f"resume=true: hydra.run.dir={run_dir} holds no job to resume (no {STATUS_FILE}); pass the dir of the "
            "killed job, e.g. hydra.run.dir=outputs/<date>/<time>, or drop resume=true to start a new one"
        )
    if status["state"] == "complete" or job_dir.is_finished:
        print(f"resume=true: {run_dir} already finished (its metrics.json is written); nothing to do.")
        raise FinishedDirError(0)
    if status.get("fingerprint") != fingerprint(config):
        given = " ".join(job_dir.overrides()) if job_dir.overrides_path.is_file() else "?"
        exit_with_error(
            f"resume=true: {run_dir} was started with another config; resuming would mix two jobs. Resume it "
            f"with its own overrides ({given}), or start a new job without resume=true"
        )


MIB = 2**20
# What a job writes beyond its model's weights: logs, metrics, plots, the tokenizer, Hydra's files.
JOB_OVERHEAD = 32 * MIB


class CheckOutputDir(Callback):
    """Refuse, before Hydra creates the job dir, an output dir on a read-only or unwritable disk, or
    one with less free space than the job will write: found at the start, not after training.

    A job writes its merged model and, while training, its best-epoch checkpoint (the whole
    module's weights), plus the adapter: about 3 x the backbone's weight files (MiniLM: 3 x 87 MiB).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_ddp_worker(config):  # rank 0 checked the dir; its DDP workers write only their own log there
            self.check(Path(config.hydra.run.dir), "hydra.run.dir", config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check(Path(config.hydra.sweep.dir), "hydra.sweep.dir", config)

    @staticmethod
    def check(out_dir: Path, key: str, config: DictConfig) -> None:
        existing = next(p for p in [out_dir.absolute(), *out_dir.absolute().parents] if p.exists())
        try:
            with tempfile.TemporaryFile(dir=existing):  # as root, permission bits say nothing: write
                pass
        except OSError as err:
            exit_with_error(
                f"{key}={out_dir}: cannot write under {existing} ({err.strerror}); "
                f"choose a writable dir, e.g. {key}=$HOME/lora_lab/{out_dir.name}"
            )
        # A resolver that fails (an embedded model's package missing) is validate()'s to report, in one line.
        pretrained = OmegaConf.select(config, "backbone.pretrained", default=None, throw_on_resolution_failure=False)
        weights = checkpoint_bytes(pretrained)
        needed = 3 * (weights or 0) + JOB_OVERHEAD
        free = shutil.disk_usage(existing).free
        if free < needed:
            what = (
                f"backbone {OmegaConf.select(config, 'backbone.name')} ({weights / MIB:.0f} MiB of weights) "
                if weights
                else ""
            )
            exit_with_error(
                f"{key}={out_dir}: {free / MIB:.0f} MiB free under {existing}, but a job with {what}writes about "
                f"{needed / MIB:.0f} MiB (merged model, best-epoch checkpoint, adapter, logs). Free space there, "
                f"or point {key} at a bigger disk"
            )


SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


class CheckSlurm(Callback):
    """A multirun on SLURM (hydra/launcher=slurm_cpu, slurm_gpu, submitit_slurm) that cannot submit
    is refused before the first trial: no partition named, no sbatch here, or no controller that
    answers. submitit would find each only at its first sbatch, as a traceback."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if launcher.get("_target_") != SLURM_LAUNCHER:
            return
        if not launcher.get("partition"):
            exit_with_error(
                "hydra.launcher.partition is not set: name your cluster's partition, "
                "hydra.launcher.partition=<name> (`sinfo -s` lists them)"
            )
        if shutil.which("sbatch") is None:
            exit_with_error(
                "hydra/launcher=slurm needs SLURM's sbatch, which is not on PATH: submit from a "
                "SLURM login node, or run the trials here with hydra/launcher=submitit_local"
            )
        try:
            listed = subprocess.run(["sinfo", "-h", "-o", "%P"], check=True, capture_output=True, text=True, timeout=30)
        except subprocess.CalledProcessError as err:
            exit_with_error(
                f"sinfo cannot reach the SLURM controller ({' '.join((err.stderr or '').split()[-12:])}); "
                "check SLURM_CONF and that slurmctld runs"
            )
        except subprocess.TimeoutExpired:
            exit_with_error(
                "sinfo got no answer from the SLURM controller in 30 s; check SLURM_CONF and that slurmctld runs"
            )
        partitions = [name.rstrip("*") for name in listed.stdout.split()]  # the default one ends in *
        if str(launcher.partition) not in partitions:
            exit_with_error(
                f"hydra.launcher.partition={launcher.partition}: no such partition; this cluster has "
                f"{', '.join(partitions) or 'none'}"
            )
