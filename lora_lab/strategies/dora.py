"""DoRA (Liu et al., 2024): LoRA with the weight split into magnitude and direction, through PEFT.

W' = m * (W + (alpha / r) * B @ A) / ||W + (alpha / r) * B @ A||_c: LoRA updates the direction, a
trainable per-output-column magnitude vector m (initialised to ||W||_c) rescales it. Same settings
as LoRA, so this regime extends the LoRA strategy and only switches `use_dora` on.
"""

from __future__ import annotations

import dataclasses

from peft import LoraConfig

from lora_lab.models.classifier import Classifier
from lora_lab.strategies.lora import LoRA


class DoRA(LoRA):
    name = "dora"

    def peft_config(self, classifier: Classifier) -> LoraConfig:
        # replace() re-runs LoraConfig's validation with use_dora on (e.g. DoRA rejects lora_bias).
        return dataclasses.replace(super().peft_config(classifier), use_dora=True)
