"""LyCORIS methods through PEFT: LoHa and LoKr share their settings (r, alpha, rank/module dropout).

LoHa (Hyeon-Woo et al., 2022, FedPara): delta W = (alpha / r) * (W1a @ W1b) * (W2a @ W2b), a
Hadamard product of two rank-r factors: twice LoRA's parameters at the same r, rank up to r**2.

LoKr (Edalati et al., 2022): delta W = (alpha / r) * W1 kron (W2a @ W2b); each dimension is factored
near its square root (384 -> 16 x 24), W1 is a small full matrix and W2 low rank (or full once
r >= half its side). Far fewer parameters than LoRA at the same r, yet the update can be full rank.
"""

from __future__ import annotations

from typing import Any

from peft import LoHaConfig, LoKrConfig

from lora_lab.regimes.peft_regime import PeftRegime


class LoHa(PeftRegime):
    config_class = LoHaConfig

    def __init__(self, name: str, learning_rate: float, head_learning_rate: float | None = None, **settings: Any):
        # alpha = r: scale alpha / r = 1 (PEFT's and LyCORIS's default), the same at every rank.
        if settings.get("alpha") is None:
            settings["alpha"] = settings["r"]
        super().__init__(name, learning_rate, head_learning_rate, **settings)


class LoKr(LoHa):
    config_class = LoKrConfig
