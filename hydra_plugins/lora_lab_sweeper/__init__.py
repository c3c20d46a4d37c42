"""Hydra's entry to lora_lab's Optuna sweeper: Hydra scans hydra_plugins/* for plugins and
instantiates only classes defined there, so the sweeper lives in lora_lab.sweeper and this
module adds the name Hydra accepts and registers `hydra/sweeper=lora_lab_optuna`.

The sweeper (and Optuna) load only when a sweep selects it: Hydra scans plugins on every start.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from lora_lab.sweeper.config import register_configs


class LoraLabOptunaSweeper(Sweeper):
    """Delegates to lora_lab.sweeper.sweeper.OptunaSweeper."""

    def __init__(self, **kwargs: Any):
        from lora_lab.sweeper.sweeper import OptunaSweeper

        self.sweeper = OptunaSweeper(**kwargs)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)


register_configs()
