"""Every config option composes; resolvers give what the configs rely on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from lora_lab.config.hardware import cpu_precision, native_bf16
from lora_lab.config.resolvers import embedded_minilm_path
from lora_lab.config.validation import validate
from lora_lab.errors import ConfigError
from tests.helpers import CONF_DIR, compose_train

GROUPS = ["dataset", "backbone", "regime", "trainer", "logger", "callbacks", "experiment"]


@pytest.mark.parametrize(
    "group,option",
    [(g, p.stem) for g in GROUPS for p in sorted(Path(CONF_DIR, g).glob("*.yaml"))],
)
def test_every_option_of_every_group_composes_and_has_a_target(tmp_path: Path, group: str, option: str):
    cfg = compose_train(tmp_path, [f"{group}={option}"])
    if group in ("dataset", "backbone", "regime", "trainer"):
        assert cfg[group]._target_, f"{group}/{option} has no _target_"
    if group in ("logger", "callbacks"):
        assert all("_target_" in node for node in cfg[group].values())


def test_the_embedded_backbone_resolves_to_weights_on_disk(tmp_path: Path):
    cfg = compose_train(tmp_path)
    assert cfg.backbone.pretrained == embedded_minilm_path()
    assert (Path(embedded_minilm_path()) / "model.safetensors").is_file()


CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n\n"


@pytest.mark.parametrize(
    "extra,native", [("", False), ("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx512_bf16x", False)]
)
def test_native_bf16_is_read_from_the_flags_line(extra: str, native: bool):
    assert native_bf16(CPUINFO.format(extra=extra)) is native
    assert not native_bf16("model name\t: Intel avx512_bf16 edition\n")  # only the flags line counts


def test_cpu_precision_is_bf16_autocast_only_on_native_bf16(monkeypatch):
    monkeypatch.setattr("lora_lab.config.hardware.cpu_has_native_bf16", lambda: True)
    assert cpu_precision() == "bf16-mixed"
    monkeypatch.setattr("lora_lab.config.hardware.cpu_has_native_bf16", lambda: False)
    assert cpu_precision() == "32-true"


def test_all_jobs_of_a_multirun_share_the_sweep_as_wandb_group(tmp_path: Path):
    cfg = compose_train(tmp_path, ["logger=wandb"])
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(tmp_path / "sweep-42")
    HydraConfig().set_config(cfg)
    assert cfg.logger.wandb.group == "sweep-42"
    assert cfg.logger.wandb.offline is True
    assert list(cfg.logger.wandb.tags) == ["b2b_sales_notes", "minilm_l6", "lora", "rank=8"]


def test_qlora_without_bitsandbytes_is_refused_with_the_install_command(tiny_cfg, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match="bitsandbytes, which is not installed: pip install bitsandbytes"):
        validate(tiny_cfg("regime=qlora"))
    validate(tiny_cfg("regime=lora"))  # other regimes do not need it


def test_target_modules_of_a_backbone_without_a_checkpoint_are_checked_when_peft_wraps_it(tiny_cfg, tiny_job):
    validate(tiny_cfg("regime.target_modules=[nope]"))  # a random model: no safetensors header to read
    with pytest.raises(ConfigError, match=r"Its Linear modules are named .*query.*value"):
        tiny_job("regime.target_modules=[nope]")


def test_shots_per_class_must_fit_the_smallest_label(tiny_cfg):
    validate(tiny_cfg("shots_per_class=4"))
    # tiny jobs generate 30 rows per label and keep 70% for training: 21
    with pytest.raises(ConfigError, match=r"has only 2\d training row\(s\).*use shots_per_class=2\d or less"):
        validate(tiny_cfg("shots_per_class=100"))


@pytest.mark.parametrize(
    "cpuinfo", ["", "processor\t: 0\nmodel name\t: a CPU with no flags line\n", OSError("no /proc")]
)
def test_hardware_facts_fall_back_to_fp32_when_cpuinfo_lacks_them(monkeypatch, cpuinfo):
    from lora_lab.config import hardware

    def read_text(self, *args, **kwargs):
        if isinstance(cpuinfo, Exception):
            raise cpuinfo
        return cpuinfo

    hardware.cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(hardware.Path, "read_text", read_text)
    try:
        assert hardware.cpu_has_native_bf16() is False and hardware.cpu_precision() == "32-true"
    finally:
        hardware.cpu_has_native_bf16.cache_clear()
