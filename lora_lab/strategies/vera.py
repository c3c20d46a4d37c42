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

from lora_lab.models.classifier import Classifier
from lora_lab.strategies.base import PeftStrategy


class VeRA(PeftStrategy):
    name = "vera"

    def __init__(
        self,
        name: str,
        learning_rate: float,
        r: int,
        target_modules: list[str] | str,
        dropout: float = 0.0,
        d_initial: float = 0.1,
        projection_prng_key: int = 0,
        save_projection: bool = True,
        head_learning_rate: float | None = None,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        self.r, self.target_modules, self.dropout, self.d_initial = r, target_modules, dropout, d_initial
        self.projection_prng_key, self.save_projection = projection_prng_key, save_projection

    def peft_config(self, classifier: Classifier) -> VeraConfig:
        return VeraConfig(
            **self.shared_config(classifier),
            r=self.r,
            vera_dropout=self.dropout,
            d_initial=self.d_initial,
            projection_prng_key=self.projection_prng_key,
            save_projection=self.save_projection,
        )
