"""VeRA (Kopiczko et al., 2024): one pair of frozen random matrices shared by every layer, through PEFT.

delta W = diag(lambda_b) @ B @ diag(lambda_d) @ A, with A (r x in) and B (out x r) random, frozen
and shared across all target modules; only the scaling vectors lambda_d (r) and lambda_b (out)
train: r + out parameters per module against LoRA's r * (in + out).

Target modules of different shapes are fine in this PEFT version: A and B are drawn at the largest
(out, in) among the targets and each layer uses a slice. So VeRA takes the backbone's LoRA targets
as they are (BERT's `dense` mixes 32x32, 64x32 and 32x64 on the tiny model).
"""

from __future__ import annotations

from peft import VeraConfig

from lora_lab.regimes.peft_regime import PeftRegime


class VeRA(PeftRegime):
    config_class = VeraConfig
