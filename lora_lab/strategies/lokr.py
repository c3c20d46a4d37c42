"""LoKr (Edalati et al., 2022; LyCORIS): a Kronecker product update, through PEFT.

delta W = (alpha / r) * W1 kron (W2a @ W2b): each dimension is factored near its square root
(384 -> 16 x 24), W1 is a small full matrix and W2 is low rank (or full once r >= half its side).
Far fewer parameters than LoRA at the same r, yet the update can be full rank.
"""

from __future__ import annotations

from peft import LoKrConfig

from lora_lab.strategies.loha import LoHa


class LoKr(LoHa):
    """LoHa's settings (r, alpha = r, rank/module dropout) plus how the Kronecker factors are split."""

    name = "lokr"
    config_class = LoKrConfig

    def __init__(self, *args, decompose_both: bool = False, decompose_factor: int = -1, **kwargs):
        super().__init__(*args, **kwargs)
        # decompose_both: W1 low-rank too; decompose_factor: -1 factors each side near its square root.
        self.decompose_both, self.decompose_factor = decompose_both, decompose_factor

    def method_settings(self) -> dict:
        return {"decompose_both": self.decompose_both, "decompose_factor": self.decompose_factor}
