"""Hydra's entry to lora_lab's auto search (hparams_search=auto): Hydra scans hydra_plugins/* for plugins
and instantiates only classes defined there, so the sweeper lives in lora_lab.auto and this module adds
the name Hydra accepts and registers `hydra/sweeper=lora_lab_auto`.

The search (and torch, through the regimes it asks) loads only when a sweep selects it: Hydra scans
plugins on every start.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from lora_lab.auto.config import register_configs


class LoraLabAutoSweeper(Sweeper):
    """Delegates to lora_lab.auto.sweeper.AutoSweeper."""

    def __init__(self, **kwargs: Any):
        from lora_lab.auto.sweeper import AutoSweeper

        self.sweeper = AutoSweeper(**kwargs)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)


register_configs()
