"""Fail-fast validation of a composed config, before any model loads: each check names the key and the fix.

Light on purpose: no torch (only a GPU trainer asks CUDA, config/hardware.py). A value owned by a lower
layer is checked by that layer's own function (data/settings.py, errors.check_unit_interval for the
module, regimes/val_checks.py), called here on the config.
"""

from __future__ import annotations

import importlib.util
import os

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lora_lab.config import hardware
from lora_lab.data.settings import check_data_settings
from lora_lab.errors import ConfigError, check_positive_int, check_unit_interval

# Regimes that read a text as one row, so windows have no meaning for them (why, in the error).
WHOLE_ROW_REGIMES = {
    "tfidf": "reads each whole text as characters already (max_length counts characters)",
    "contrastive": "trains its body on pairs of whole rows, and its pair loop has no windows",
}


def check_min_train_steps(steps: object) -> None:
    """The size rule's steps (lora_lab/callbacks/min_steps.py): 0 (off) or a positive whole number.
    Checked before the job starts and by the callback itself."""
    if steps != 0:
        check_positive_int("callbacks.min_train_steps.steps", steps, example="e.g. 100, or 0 to turn the size rule off")


def validate(cfg: DictConfig) -> None:
    """Fail before any model loads: each check names the offending key and how to fix it."""
    check_positive_int("rank", cfg.rank, "the LoRA rank", "e.g. rank=8")
    if (threshold := cfg.get("malloc_mmap_threshold")) is not None:
        # glibc refuses a threshold above HEAP_MAX_SIZE / 2, 32 MiB on 64-bit (job/allocator.py).
        if check_positive_int("malloc_mmap_threshold", threshold, "glibc's mmap threshold in bytes") > 32 << 20:
            raise ConfigError(
                f"malloc_mmap_threshold={threshold}: glibc takes at most 33554432 (32 MiB); "
                "use e.g. malloc_mmap_threshold=131072, or null for glibc's dynamic default"
            )
    data = cfg.data
    check_data_settings(
        data.batch_size,
        data.eval_batch_size,
        data.max_length,
        data.max_length_cap,
        cfg.get("shots_per_class"),
        data.truncation,
        data.head_tokens,
        data.get("long_text", "truncate"),
        data.get("max_chunks", 4),
        cfg.get("train_rows"),
    )
    if data.get("long_text") == "chunk" and cfg.regime.name in WHOLE_ROW_REGIMES:
        raise ConfigError(
            f"data.long_text=chunk: regime={cfg.regime.name} {WHOLE_ROW_REGIMES[cfg.regime.name]}; "
            "use data.long_text=truncate (the default) with it"
        )
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
    check_unit_interval("module.label_smoothing", cfg.module.get("label_smoothing", 0.0), example="e.g. 0.1")
    if (budget := cfg.module.get("max_tokens_per_pass")) is not None:
        check_positive_int("module.max_tokens_per_pass", budget, example="e.g. 4096, or null")
    if (rule := (cfg.get("callbacks") or {}).get("min_train_steps")) is not None:
        check_min_train_steps(rule.get("steps"))
    accelerator = cfg.trainer.get("accelerator", "auto")
    if accelerator in ("gpu", "cuda") and not hardware.cuda_available():
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
    if cfg.get("stack", {}).get("_target_") and hardware.launches_processes(cfg.trainer):
        raise ConfigError(
            "stack=tfidf with a DDP trainer: the stack scores the whole validation and test splits in rank 0, "
            "which holds only its share of them; use stack=none with trainer=ddp_cpu, or trainer=cpu"
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
            raise ConfigError(
                f"regime.{key}={value}: must lie in (0, 1]; typical values are 1e-5 (full "
                f"fine-tuning) to 1e-3 (LoRA), e.g. regime.{key}=1e-3"
            )
    for key, value in regime.items():
        if key.endswith("dropout") and value is not None:
            check_unit_interval(f"regime.{key}", value, "a dropout probability", f"e.g. regime.{key}=0.1")
        if key in ("lora_alpha", "alpha") and value is not None and value <= 0:
            raise ConfigError(
                f"regime.{key}={value}: must be > 0, or null for the regime's default "
                f"(see conf/regime/{regime.name}.yaml)"
            )
    if "val_checks" in regime:
        from lora_lab.regimes.val_checks import check_settings

        check_settings(regime.val_checks, regime.get("patience"))
    if "bits" in regime and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            f"regime={regime.name} quantizes the base with bitsandbytes, which is not installed: "
            "pip install bitsandbytes (make install does), or use regime=lora"
        )
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


def _check_shots(shots: int, dataset: DictConfig) -> None:
    """shots_per_class keeps that many training rows of every label (its range: data/settings.py): each
    label must have them. Reads the dataset (no ML library; Banking77: about 0.5 s) only when few-shot
    training is asked for."""
    from collections import Counter

    counts = Counter(instantiate(dataset).load()["train"].labels)
    label, fewest = min(counts.items(), key=lambda item: (item[1], item[0]))
    if fewest < shots:
        raise ConfigError(
            f"shots_per_class={shots}: label {label!r} of dataset {dataset.name} has only {fewest} training row(s), "
            f"so it cannot give {shots}; use shots_per_class={fewest} or less (the smallest label's count)"
        )
