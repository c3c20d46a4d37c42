"""Hydra callbacks that run before Hydra writes anything into a job dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lora_lab.job import STATUS_FILE
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
        run_dir = Path(config.hydra.run.dir)
        if (run_dir / STATUS_FILE).exists() or (run_dir / "metrics.json").exists():
            raise FinishedDirError(
                f"hydra.run.dir={run_dir} holds a finished job; lora_lab never overwrites one. "
                "Drop the hydra.run.dir override (each run gets a fresh timestamped dir) or choose a new dir."
            )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.sweeper._target_") == SWEEPER_TARGET:
            # lora_lab's Optuna sweeper resumes into its sweep dir: it names each job dir by trial
            # number, unique in its study, and itself refuses a dir another study numbered.
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        if any(sweep_dir.glob(f"*/{STATUS_FILE}")):
            raise FinishedDirError(
                f"hydra.sweep.dir={sweep_dir} holds jobs of an earlier multirun; lora_lab never overwrites them. "
                "Drop the hydra.sweep.dir override or choose a new dir."
            )
