"""The auto search's structured config, registered as `hydra/sweeper=lora_lab_auto`.

Every field is a `hydra.sweeper.<field>` override; conf/hparams_search/auto.yaml sets the portfolio.
The budget is the top-level key `budget_minutes` (auto.yaml defines it), read by the sweeper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

# Hydra instantiates plugins only from the hydra_plugins namespace: this is the shim's class.
AUTO_SWEEPER_TARGET = "hydra_plugins.lora_lab_auto.LoraLabAutoSweeper"


@dataclass
class LoraLabAutoSweeperConf:
    _target_: str = AUTO_SWEEPER_TARGET
    # The portfolio reaches the sweeper as a config, not objects.
    _recursive_: bool = False
    # name -> {overrides: [key=value, ...], cost: <prior cost, the default job = 1>}. Typed Any: a
    # mapping of mappings that the sweeper checks (portfolio.py).
    portfolio: Any = field(default_factory=dict)
    # Run only these entries (a list of names); null: every entry whose backbone is installed.
    only: Any = None
    # Each rung keeps the top 1/eta of its entries for the next, which trains on eta x the rows.
    eta: int = 3
    # Rungs at most: rows eta^-(rungs-1), ..., 1/eta, 1 of the training rows; fewer on a small dataset.
    rungs: int = 3
    # The fewest training rows of a rung; null: the size rule's break-even (rows x max_epochs = steps x
    # batch_size: 1,067 by default), below which a job costs the same 100 optimizer steps.
    min_rows: Any = None
    direction: str = "maximize"  # of the task's optimized_metric (val/acc_best by default)
    # The estimate of what a job does besides training (or of a whole job no max_time can cut) is
    # raised by this share before it is compared with the time left.
    safety: float = 0.5
    # A gradient job runs only if at least this share of its estimated training fits before the
    # rung's deadline; else it is skipped (cut that short it ranks nothing).
    min_train_share: float = 0.5
    # Seconds kept at the end of the budget for the report and auto.json.
    finish_s: float = 30.0
    # While a job runs, auto.json's time spent is written this often (a killed sweep's rerun counts it).
    heartbeat_s: float = 15.0


def register_configs() -> None:
    """Make `hydra/sweeper=lora_lab_auto` selectable (called when Hydra scans its plugins)."""
    ConfigStore.instance().store(
        group="hydra/sweeper", name="lora_lab_auto", node=LoraLabAutoSweeperConf, provider="lora_lab"
    )
