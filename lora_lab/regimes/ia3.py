"""(IA)^3 (Liu et al., 2022): learned vectors that rescale activations, through PEFT.

Keys and values are rescaled on their outputs (l_k * k, l_v * v), the feed-forward block on its
hidden activations, i.e. on the input of its down projection (W_down @ (l_ff * h)). One vector
per target module: the cheapest regime after head-only, and mergeable (a diagonal scaling).

Which modules those are depends on the architecture, and the backbone's `target_modules` (a LoRA
list: the attention projections plus `dense`) cannot say it: BERT's `dense` matches the attention
output, the FFN up and down projections and the pooler alike, and Phi's FFN down projection (`fc2`)
is not in its list at all. So both lists default to null, which makes PEFT use its own (IA)^3
placement for the model type: BERT (MiniLM) -> key, value, output.dense (feedforward:
output.dense); Phi -> q_proj, v_proj, fc2 (feedforward: fc2). An architecture PEFT does not know
needs both lists set in conf/regime/ia3.yaml (or on the command line).
"""

from __future__ import annotations

from typing import Any

from peft import IA3Config

from lora_lab.errors import ConfigError
from lora_lab.regimes.peft_regime import PeftRegime


class IA3(PeftRegime):
    config_class = IA3Config

    def __init__(self, name: str, learning_rate: float, head_learning_rate: float | None = None, **settings: Any):
        if (settings.get("target_modules") is None) != (settings.get("feedforward_modules") is None):
            raise ConfigError(
                "regime=ia3: set both regime.target_modules and regime.feedforward_modules (feedforward being a "
                "subset of target), or neither for PEFT's per-architecture default"
            )
        super().__init__(name, learning_rate, head_learning_rate, **settings)
