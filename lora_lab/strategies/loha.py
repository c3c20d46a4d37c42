"""LoHa (Hyeon-Woo et al., 2022, FedPara; LyCORIS): a Hadamard product of two low-rank updates, through PEFT.

delta W = (alpha / r) * (W1a @ W1b) * (W2a @ W2b): twice LoRA's parameters at the same r, but the
Hadamard product of two rank-r factors reaches rank r**2.
"""

from __future__ import annotations

from peft import LoHaConfig

from lora_lab.models.classifier import Classifier
from lora_lab.strategies.base import PeftStrategy


class LoHa(PeftStrategy):
    name = "loha"
    # LyCORIS methods share their settings (r, alpha, rank/module dropout); LoKr subclasses this.
    config_class: type[LoHaConfig] = LoHaConfig

    def __init__(
        self,
        name: str,
        learning_rate: float,
        r: int,
        target_modules: list[str] | str,
        alpha: float | None = None,
        rank_dropout: float = 0.0,
        module_dropout: float = 0.0,
        head_learning_rate: float | None = None,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        self.r, self.target_modules = r, target_modules
        # alpha = r: scale alpha / r = 1 (PEFT's and LyCORIS's default), the same at every rank.
        self.alpha = alpha if alpha is not None else r
        self.rank_dropout, self.module_dropout = rank_dropout, module_dropout

    def method_settings(self) -> dict:
        """Settings of one LyCORIS method beyond the shared ones (none for LoHa)."""
        return {}

    def peft_config(self, classifier: Classifier) -> LoHaConfig:
        return self.config_class(
            **self.shared_config(classifier),
            r=self.r,
            alpha=self.alpha,
            rank_dropout=self.rank_dropout,
            module_dropout=self.module_dropout,
            **self.method_settings(),
        )
