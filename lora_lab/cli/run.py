"""Where the job runs, as Hydra and the launcher tell it: a single run or a multirun, its overrides, a DDP worker."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lora_lab.config.hardware import launches_processes


def is_multirun() -> bool:
    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def sweep_dir() -> Path | None:
    """The multirun's dir, where sibling jobs live (None for a single run)."""
    return Path(HydraConfig.get().sweep.dir) if is_multirun() else None


def task_overrides() -> list[str]:
    """The job's own command-line overrides (a multirun's job: its combination), [] outside Hydra."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def is_ddp_worker(cfg: DictConfig) -> bool:
    """Whether this process is rank 1.. of a DDP job: Lightning started it by re-running the command
    into rank 0's job dir, with LOCAL_RANK (torchrun: RANK) set. Known before torch loads."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    return rank > 0 and cfg.get("trainer") is not None and launches_processes(cfg.trainer)  # eval.yaml has no trainer


def quoted_pick(argv: list[str]) -> list[str]:
    """`pick=latency/p50_ms<=5` as `pick="latency/p50_ms<=5"`: Hydra's override grammar refuses `<`
    and `>` outside quotes, and the shell has already taken the user's quotes away."""
    return [
        f'pick="{arg[5:]}"' if arg.startswith("pick=") and not arg[5:].startswith(("'", '"')) else arg for arg in argv
    ]
