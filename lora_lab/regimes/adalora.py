"""AdaLoRA (Zhang et al., 2023): SVD-form LoRA whose rank budget is reallocated during training, through PEFT.

delta W = (alpha / init_r) * P @ diag(lambda) @ Q on each target module. Every module starts at
init_r triplets (p_i, lambda_i, q_i); after a warm-up of `tinit` steps the total budget shrinks
(cubically) to target_r triplets per module on average, by zeroing the singular values lambda_i of
the least important triplets model-wide, so important modules keep more rank than others. The last
`tfinal` steps fine-tune with the final allocation frozen.

The schedule needs the number of optimizer steps, known only once training starts: on_fit_start()
sets it (and resolves tinit/tfinal given as shares of it), after_optimizer_step() runs PEFT's
update_and_allocate(). The adapter keeps only the surviving triplets (PEFT's rank_pattern).

The hook runs after each optimizer step, before gradients are zeroed (PEFT's contract), so a
pruned triplet is zero for the next forward and at the end of the fit.

Not used here: AdaLoRA's orthogonality regulariser (`orth_reg_weight`). PEFT adds it to `outputs.loss`,
and our classifiers compute the loss outside the model (no labels reach it), so it would be inert.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from peft import AdaLoraConfig
from peft.tuners.adalora import AdaLoraModel

from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier
from lora_lab.regimes.peft_regime import PeftRegime

log = logging.getLogger(__name__)

# total_step stand-in until on_fit_start knows the real one (PEFT refuses a config without it).
_UNKNOWN_TOTAL_STEP = 10_000


class AdaLoRA(PeftRegime):
    config_class = AdaLoraConfig

    def __init__(self, name: str, learning_rate: float, head_learning_rate: float | None = None, **settings: Any):
        target_r = settings["target_r"]
        # init_r = 1.5 * target_r by default (PEFT's 12 -> 8): a third of the triplets to prune.
        if settings.get("init_r") is None:
            settings["init_r"] = math.ceil(1.5 * target_r)
        if settings["init_r"] <= target_r:
            raise ConfigError(
                f"regime=adalora: init_r={settings['init_r']} must exceed target_r={target_r}, "
                "or nothing is reallocated"
            )
        # PEFT scales by alpha / ranknum (= init_r): alpha = 2 * init_r keeps LoRA's scale of 2.
        if settings.get("lora_alpha") is None:
            settings["lora_alpha"] = 2 * settings["init_r"]
        for key in ("tinit", "tfinal"):
            value = settings.get(key, 0)
            if isinstance(value, float) and not 0.0 <= value < 1.0:
                raise ConfigError(
                    f"regime.{key}={value}: a float is a share of the fit's steps, in [0, 1); an int is a step count"
                )
        if settings.get("deltaT", 1) < 1:
            raise ConfigError(f"regime.deltaT={settings['deltaT']}: must be >= 1")
        super().__init__(name, learning_rate, head_learning_rate, **settings)
        # tinit / tfinal may be shares of the fit, and total_step null: steps are set by schedule().
        self.tinit, self.tfinal = self.settings.pop("tinit", 0.1), self.settings.pop("tfinal", 0.2)
        self.total_step = self.settings.pop("total_step", None)

    def schedule(self, total_steps: int) -> tuple[int, int, int]:
        """(total_step, tinit, tfinal) in steps for a fit of `total_steps` optimizer steps.

        after_optimizer_step sees global_step 0 .. total - 1 (Lightning's count before the step)
        and PEFT freezes the allocation at step total - tfinal: tfinal >= 1 makes that happen inside
        the fit. A fit too short for the configured phases gets them shortened so that a budgeting
        phase remains (AdaLoraConfig's own requirement).
        """
        total = max(1, int(self.total_step or total_steps))

        def steps(value: int | float) -> int:
            return round(value * total) if isinstance(value, float) else int(value)

        tinit, tfinal = steps(self.tinit), max(1, steps(self.tfinal))
        if tinit >= total - tfinal:
            tfinal = min(tfinal, max(0, total - 1))
            tinit = max(0, min(tinit, total - tfinal - 1))
            log.warning(
                "AdaLoRA: %d steps are too few for tinit=%s, tfinal=%s; using tinit=%d, tfinal=%d steps",
                total,
                self.tinit,
                self.tfinal,
                tinit,
                tfinal,
            )
        return total, tinit, tfinal

    def peft_config(self, classifier: Classifier) -> AdaLoraConfig:
        total, tinit, tfinal = self.schedule(_UNKNOWN_TOTAL_STEP)
        return AdaLoraConfig(
            **self.settings, **self.classifier_settings(classifier), tinit=tinit, tfinal=tfinal, total_step=total
        )

    def on_fit_start(self, classifier: Classifier, total_steps: int) -> None:
        tuner = _tuner(classifier)
        if not hasattr(tuner, "rankallocator"):
            return  # loaded for inference: nothing to allocate
        # The allocator reads this very config object (budget_schedule, update_and_allocate).
        config = tuner.rankallocator.peft_config
        config.total_step, config.tinit, config.tfinal = self.schedule(total_steps)
        config.rank_pattern = None
        tuner.rankallocator.reset_ipt()

    def after_optimizer_step(self, classifier: Classifier, global_step: int) -> None:
        tuner = _tuner(classifier)
        if not hasattr(tuner, "rankallocator"):
            return
        adapter = tuner.trainable_adapter_name
        config = tuner.peft_config[adapter]
        params = [p for n, p in tuner.model.named_parameters() if "lora_" in n and adapter in n]
        if all(p.grad is None for p in params):
            return  # no gradient to measure importance by
        measured = bool(tuner.rankallocator.exp_avg_ipt) or config.rank_pattern is not None
        if global_step >= config.total_step - config.tfinal and not measured:
            return  # a fit too short to have measured any importance: nothing to allocate by
        # Modules the loss does not reach (BERT's pooler under mean pooling) have no gradient:
        # zero importance, so their triplets are the first to go.
        missing = [p for p in params if p.grad is None]
        for p in missing:
            p.grad = torch.zeros_like(p)
        try:
            tuner.update_and_allocate(global_step)
        finally:
            for p in missing:
                p.grad = None

    def save_adapter(self, classifier: Classifier, out_dir: Path) -> None:
        # PEFT saves only the triplets its rank_pattern keeps. Keep exactly those whose singular
        # value is non-zero now: every masked triplet goes, and the adapter reproduces the model
        # as it is, also after the best epoch was restored from a checkpoint (which holds no pattern).
        tuner = _tuner(classifier)
        allocated = {name: c.rank_pattern for name, c in tuner.peft_config.items() if c.rank_pattern is not None}
        for name in allocated:
            tuner.peft_config[name].rank_pattern = _nonzero_pattern(tuner, name)
        try:
            with warnings.catch_warnings():
                # A module whose every triplet was pruned saves as rank 0, which PEFT takes for an
                # ungathered ZeRO-3 / FSDP shard: a false alarm here.
                warnings.filterwarnings("ignore", message=".*LoRA tensor\\(s\\) have invalid shape")
                super().save_adapter(classifier, out_dir)
        finally:
            for name, pattern in allocated.items():
                tuner.peft_config[name].rank_pattern = pattern

    def load_adapter(self, classifier: Classifier, adapter_dir: Path) -> None:
        with warnings.catch_warnings():
            # AdaLoRA's rank_pattern (triplets kept per module) shares its name with LoRA's
            # (rank per module-name pattern), and PEFT checks it as the latter: a false alarm here.
            warnings.filterwarnings("ignore", message="The following rank_pattern keys did not match")
            super().load_adapter(classifier, adapter_dir)


def _tuner(classifier: Classifier) -> AdaLoraModel:
    return classifier.transformer.base_model


def _nonzero_pattern(tuner: AdaLoraModel, adapter: str) -> dict[str, list[bool]]:
    return {n: (p != 0).view(-1).tolist() for n, p in tuner.model.named_parameters() if f"lora_E.{adapter}" in n}
