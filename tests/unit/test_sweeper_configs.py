"""Hydra finds the sweeper, and every hparams_search config composes into a search it can run.

Subprocess: the discovery test runs a fresh interpreter in another working dir, because
Hydra finding the plugin at import time, from anywhere, is what it tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lora_lab.sweeper.config import PRUNERS, SAMPLERS, SWEEPER_TARGET
from lora_lab.sweeper.search_space import parse_search_space
from tests.helpers import CONF_DIR, TINY, compose_train

# auto.yaml selects the budgeted auto search instead (hydra/sweeper=lora_lab_auto: tests/unit/test_auto_search.py).
SEARCHES = sorted(p.stem for p in Path(CONF_DIR, "hparams_search").glob("*.yaml") if p.stem != "auto")


def test_hydra_discovers_the_sweeper_plugin_from_any_working_dir(tmp_path: Path):
    code = (
        "from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; "
        "print([f'{c.__module__}.{c.__name__}' for c in Plugins.instance().discover(Sweeper)])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert SWEEPER_TARGET in out, "reinstall lora_lab (pip install -e .) so the editable install maps hydra_plugins/"


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("name", SEARCHES)
def test_each_hparams_search_composes_into_a_search_space(tmp_path: Path, name: str):
    cfg = compose_train(tmp_path, [f"hparams_search={name}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == SWEEPER_TARGET and sweeper.study_name == name
    space = parse_search_space(OmegaConf.to_container(sweeper.params), [])
    assert len(space.distributions) >= 2
    # Every searched key exists in the composed job config (a group name like `regime` included).
    absent = object()
    for key in space.distributions:
        assert OmegaConf.select(cfg, key, default=absent) is not absent, f"{name}: {key} is not a key of the job config"
    assert isinstance(instantiate(sweeper.sampler), optuna.samplers.BaseSampler)
    assert isinstance(instantiate(sweeper.pruner), optuna.pruners.BasePruner)


def test_the_searches_compose_with_tiny_overrides_as_the_tests_run_them(tmp_path: Path):
    cfg = compose_train(tmp_path, ["hparams_search=lora_lr_rank", *TINY, "dataset=b2b_sales_notes"])
    assert (cfg.backbone.name, cfg.dataset.name, cfg.trainer.max_epochs) == ("tiny_bert", "b2b_sales_notes", 1)


@pytest.mark.parametrize("group,options", [("sampler", SAMPLERS), ("pruner", PRUNERS)])
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_each_sampler_and_pruner_option_builds_its_optuna_class(tmp_path: Path, group: str, options: dict):
    for name in options:
        bound = ["hydra.sweeper.pruner.lower=0.5"] if name == "threshold" else []  # it needs a bound to prune at
        cfg = compose_train(tmp_path, ["hydra/sweeper=lora_lab_optuna", f"hydra/sweeper/{group}={name}", *bound])
        node = cfg.hydra.sweeper[group]
        assert type(instantiate(node)).__name__ == node._target_.rsplit(".", 1)[1]


@pytest.mark.parametrize("launcher", sorted(p.stem for p in Path(CONF_DIR, "hydra", "launcher").glob("*.yaml")))
def test_each_shipped_slurm_launcher_composes_onto_submitits_and_needs_a_partition(tmp_path: Path, launcher: str):
    cfg = compose_train(tmp_path, [f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu-a100"])
    settings = cfg.hydra.launcher
    assert settings._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert settings.partition == "gpu-a100" and settings.timeout_min >= 60 and settings.array_parallelism >= 1
    assert settings.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # beside the jobs: a shared file system
    assert (
        compose_train(tmp_path, [f"hydra/launcher={launcher}"]).hydra.launcher.partition is None
    )  # CheckSlurm refuses it
