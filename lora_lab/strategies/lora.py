"""LoRA (Hu et al., 2021): W + (alpha / r) * B @ A on the target modules, through PEFT."""

from __future__ import annotations

from peft import LoraConfig

from lora_lab.models.classifier import Classifier
from lora_lab.strategies.base import PeftStrategy


class LoRA(PeftStrategy):
    name = "lora"

    def __init__(
        self,
        name: str,
        learning_rate: float,
        r: int,
        target_modules: list[str] | str,
        alpha: float | None = None,
        dropout: float = 0.0,
        use_rslora: bool = False,
        init_lora_weights: bool | str = True,
        head_learning_rate: float | None = None,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        self.r, self.target_modules, self.dropout = r, target_modules, dropout
        # alpha = 2r keeps the update scale alpha / r = 2 whatever the rank, so rank sweeps
        # compare ranks and not step sizes.
        self.alpha = alpha if alpha is not None else 2 * r
        self.use_rslora, self.init_lora_weights = use_rslora, init_lora_weights

    def peft_config(self, classifier: Classifier) -> LoraConfig:
        return LoraConfig(
            **self.shared_config(classifier),
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            use_rslora=self.use_rslora,
            init_lora_weights=self.init_lora_weights,
        )
