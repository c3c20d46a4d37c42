"""The sweeper's structured config, registered as `hydra/sweeper=lora_lab_optuna`, and its
sampler and pruner groups (`hydra/sweeper/sampler=random`, `hydra/sweeper/pruner=nop`): one
option per Optuna class (`nsgaii` and, where the installed Optuna has it, `gp` for several objectives).

Every field is a `hydra.sweeper.<field>` override; conf/hparams_search/*.yaml set them per search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# Hydra instantiates plugins only from the hydra_plugins namespace: this is the shim's class.
SWEEPER_TARGET = "hydra_plugins.lora_lab_sweeper.LoraLabOptunaSweeper"

# Seeded: the same command proposes the same trials (a resumed study shifts the seed, see sweeper.py).
SAMPLERS: dict[str, dict[str, Any]] = {
    "tpe": {"_target_": "optuna.samplers.TPESampler", "seed": 42, "n_startup_trials": 10},
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": 42},
    # Every combination of categorical / stepped dimensions once, then the sweep ends: a grid.
    "bruteforce": {"_target_": "optuna.samplers.BruteForceSampler", "seed": 42},
    "cmaes": {"_target_": "optuna.samplers.CmaEsSampler", "seed": 42},
    "qmc": {"_target_": "optuna.samplers.QMCSampler", "seed": 42, "scramble": True},
    # Several objectives (hydra.sweeper.objectives): a genetic search for the Pareto front. Its first
    # generation is random; Optuna's default of 50 would leave a 16-20 trial study a random search.
    "nsgaii": {"_target_": "optuna.samplers.NSGAIISampler", "seed": 42, "population_size": 8},
}
# A Gaussian process (on torch), where the installed Optuna has one: GPSampler came in Optuna 3.6 and
# takes several objectives from 4.4. Checked by version: importing Optuna here would load it at every
# Hydra start.
GP_SAMPLER_SINCE, GP_MULTI_OBJECTIVE_SINCE = (3, 6), (4, 4)
GP_TARGET = "optuna.samplers.GPSampler"
CMAES_TARGET = "optuna.samplers.CmaEsSampler"  # one objective only: refused with hydra.sweeper.objectives


def optuna_version() -> tuple[int, int] | None:
    """The installed Optuna's (major, minor), read without importing it; None if unknown."""
    try:
        major, minor = (int(part) for part in version("optuna").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return None
    return major, minor


if (optuna_version() or (0, 0)) >= GP_SAMPLER_SINCE:
    SAMPLERS["gp"] = {"_target_": GP_TARGET, "seed": 42, "n_startup_trials": 10}
PRUNERS: dict[str, dict[str, Any]] = {
    # Optuna's default pruner, but never on the first validation (step 0): a LoRA job's first
    # epoch is mostly warmup, too noisy to judge. Steps are validations (epochs by default).
    "median": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 1},
    "hyperband": {
        "_target_": "optuna.pruners.HyperbandPruner",
        "min_resource": 1,
        "max_resource": "auto",  # the epochs of the first trial that finishes
        "reduction_factor": 3,
    },
    # Prunes a trial whose metric falls below `lower` (or rises above `upper`): set one of them.
    "threshold": {"_target_": "optuna.pruners.ThresholdPruner", "lower": None, "upper": None, "n_warmup_steps": 0},
    "nop": {"_target_": "optuna.pruners.NopPruner"},  # report every epoch, prune nothing
}


@dataclass
class LoraLabOptunaSweeperConf:
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    _target_: str = SWEEPER_TARGET
    # The sampler and pruner reach the sweeper as configs, not objects: it reseeds the sampler on
    # resume and hands the pruner's config to the jobs through the study.
    _recursive_: bool = False
    # Search space, in Hydra's override syntax, e.g. `regime.learning_rate: tag(log, interval(1e-4, 1e-2))`.
    params: dict[str, Any] = field(default_factory=dict)
    direction: str = "maximize"  # of the task's `optimized_metric` (val/acc_best by default)
    # Several objectives instead: metrics.json key -> maximize | minimize, in order, e.g.
    # {val/acc_best: maximize, artifact/adapter_bytes: minimize}. The study's directions follow this
    # order and each trial tells its job's metrics.json values; the first one is pruned on (pruning.py).
    # Unset (null): one objective, `direction` of the task's optimized_metric. Typed Any: OmegaConf
    # cannot merge a command-line mapping into a null dict[str, str] field; the sweeper checks it.
    objectives: Any = None
    # Seeds per finalist: after n_trials, the Pareto front (several objectives) or the best
    # reseed_top_k trials (one objective; 3 unless set) run again with seed+1, seed+2, ... until each
    # has `seeds`, in <sweep dir>/<trial>-seed<seed>; the report then gives mean ± 95% CI and a paired
    # test of the winner against the runner-up (sweeper/reseed.py). null: 1, or 3 with reseed_top_k.
    seeds: Any = None
    reseed_top_k: Any = None  # at most this many finalists, best first by the (first) objective
    # Trials of the whole study, finished ones counted: a resumed or second worker runs only the rest.
    n_trials: int = 20
    # Trials asked at once and handed to the launcher as one batch (parallel with hydra/launcher=joblib).
    n_jobs: int = 1
    # null: sqlite:///<sweep dir>/optuna.db. Any SQLAlchemy URL shares the study between workers.
    storage: str | None = None
    study_name: str = "lora_lab"
    sampler: Any = MISSING
    pruner: Any = MISSING
    # Share of this run's trials allowed to fail before the sweep stops with an error.
    max_failure_rate: float = 0.25
    # A worker writes a heartbeat for its running trials every heartbeat_interval s; a RUNNING trial
    # whose heartbeat is older than grace_period s was left by a dead worker: failed and retried.
    heartbeat_interval: int = 30
    grace_period: int = 90


def register_configs() -> None:
    """Make `hydra/sweeper=lora_lab_optuna` and its sampler/pruner options selectable (called when
    Hydra scans its plugins)."""
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="lora_lab_optuna", node=LoraLabOptunaSweeperConf, provider="lora_lab")
    for group, options in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        for name, node in options.items():
            store.store(group=f"hydra/sweeper/{group}", name=name, node=node, provider="lora_lab")
