"""LoRA (Hu et al., 2021): W + (alpha / r) * B @ A on the target modules, through PEFT.

DoRA (Liu et al., 2024) is the same regime with `use_dora: true` (conf/regime/dora.yaml inherits
lora.yaml): W' = m * (W + (alpha / r) * B @ A) / ||W + (alpha / r) * B @ A||_c, LoRA on the
direction of each weight plus a trainable magnitude per output column.
"""

from __future__ import annotations

from typing import Any

from peft import LoraConfig

from lora_lab.regimes.peft_regime import PeftRegime


class LoRA(PeftRegime):
    config_class = LoraConfig

    def __init__(self, name: str, learning_rate: float, head_learning_rate: float | None = None, **settings: Any):
        # lora_alpha = 2r by default keeps the update scale alpha / r = 2 whatever the rank, so rank
        # sweeps compare ranks and not step sizes.
        if settings.get("lora_alpha") is None:
            settings["lora_alpha"] = 2 * settings["r"]
        super().__init__(name, learning_rate, head_learning_rate, **settings)
