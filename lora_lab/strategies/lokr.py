"""LoKr (Edalati et al., 2022; LyCORIS): a Kronecker product update, through PEFT.

delta W = (alpha / r) * W1 kron (W2a @ W2b): each dimension is factored near its square root
(384 -> 16 x 24), W1 is a small full matrix and W2 is low rank (or full once r >= half its side).
Far fewer parameters than LoRA at the same r, yet the update can be full rank.
"""

from __future__ import annotations

from peft import LoKrConfig

from lora_lab.models.classifier import Classifier
from lora_lab.strategies.base import PeftStrategy


class LoKr(PeftStrategy):
    name = "lokr"

    def __init__(
        self,
        name: str,
        learning_rate: float,
        r: int,
        target_modules: list[str] | str,
        alpha: float | None = None,
        rank_dropout: float = 0.0,
        module_dropout: float = 0.0,
        decompose_both: bool = False,
        decompose_factor: int = -1,
        head_learning_rate: float | None = None,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        self.r, self.target_modules = r, target_modules
        # alpha = r: scale alpha / r = 1 (PEFT's and LyCORIS's default), the same at every rank.
        self.alpha = alpha if alpha is not None else r
        self.rank_dropout, self.module_dropout = rank_dropout, module_dropout
        self.decompose_both, self.decompose_factor = decompose_both, decompose_factor

    def peft_config(self, classifier: Classifier) -> LoKrConfig:
        return LoKrConfig(
            **self.shared_config(classifier),
            r=self.r,
            alpha=self.alpha,
            rank_dropout=self.rank_dropout,
            module_dropout=self.module_dropout,
            decompose_both=self.decompose_both,
            decompose_factor=self.decompose_factor,
        )
