"""Model FLOPs of training an encoder, from the tokens it actually processed.

Dense (weight) matmuls, per training token, with N the encoder's matmul weights:
    forward 2N (one multiply-add per weight), backward 4N when the weights train
    (2N for the activation gradients + 2N for the weight gradients).
    full fine-tune: 2N + 4N = 6N;  LoRA: 2N + 2N = 4N (frozen weights need no weight
    gradient, but activation gradients still flow down to the lowest adapted layer).
N counts only weights that multiply every token: per layer Q, K, V, output (4 d^2) and the
FFN (2 d d_ff). Embedding lookups are no matmul; the pooler/classifier run once per text
(d^2 + d x labels: under 0.2% of a 20-token text's FLOPs) and LoRA's own rank-r matmuls
(3 x 2 r (d_in + d_out) per adapted module: forward, activation and weight gradients) add
about 1% to 4N at r=8 on query/value, under 5% on lora_lab's default query/key/value/dense:
both left out, so the figures slightly under-count.

Attention matmuls (no weights, so LoRA saves nothing there), per layer, for a token in a row
of width W: Q K^T is d MACs per key and (softmax) V is d MACs per key, so 2 x 2 W d = 4 W d
FLOPs forward; backward needs both operands' gradients: 2 x forward = 8 W d. Training: 12 W d.

So train FLOPs = k N T + 12 n_layers d S, with k = 6 (full) or 4 (LoRA), T the tokens and S
the sum over tokens of their row width W (= sum over rows of W^2). Counted twice: over padded
batches (what the CPU computed) and over real tokens only (the useful work); the gap is padding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

# Multiplier of N per training token for the dense matmuls (see the module docstring).
DENSE_FACTOR = {"full": 6, "lora": 4}
# Forward 4 W d + backward 8 W d per token per layer (see the module docstring).
ATTENTION_FACTOR = 12


@dataclass(frozen=True)
class EncoderShape:
    """The sizes the FLOP formula needs: layers, hidden width d, FFN width d_ff."""

    layers: int
    hidden: int
    intermediate: int

    @classmethod
    def from_config(cls, config: object) -> EncoderShape:
        """From a transformers BERT-style config (num_hidden_layers, hidden_size, intermediate_size)."""
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size)

    @property
    def matmul_params(self) -> int:
        """N: weights every token meets, 4 d^2 (Q, K, V, output) + 2 d d_ff (FFN) per layer.
        MiniLM-L6 (6 x 384, d_ff 1536): 6 x (589,824 + 1,179,648) = 10,616,832."""
        return self.layers * (4 * self.hidden**2 + 2 * self.hidden * self.intermediate)


@dataclass
class TokenCount:
    """Tokens of the training batches: padded (what was computed) and real (attention mask 1).

    *_sq sums each token's row width (W for padded, the row's own length for real), the S of
    the attention term: a batch of B rows padded to W adds B W to `padded` and B W^2 to `padded_sq`.
    """

    batches: int = 0
    examples: int = 0
    padded: int = 0
    padded_sq: int = 0
    real: int = 0
    real_sq: int = 0

    def add(self, attention_mask: torch.Tensor) -> None:
        """Count one (batch, width) attention mask."""
        if attention_mask.ndim != 2:
            raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)}: expected (batch, width)")
        rows, width = attention_mask.shape
        lengths = attention_mask.sum(dim=1).long()
        self.batches += 1
        self.examples += rows
        self.padded += rows * width
        self.padded_sq += rows * width * width
        self.real += int(lengths.sum())
        self.real_sq += int((lengths * lengths).sum())

    @property
    def padding_share(self) -> float:
        """Share of the computed tokens that were padding."""
        return 1 - self.real / self.padded if self.padded else 0.0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> TokenCount:
        return cls(**data)


def train_flops(shape: EncoderShape, regime: str, tokens: int, width_sum: int) -> float:
    """k N T + 12 n_layers d S (module docstring); regime 'full' or 'lora'."""
    if regime not in DENSE_FACTOR:
        raise ValueError(f"regime={regime!r}: the FLOP formula knows {sorted(DENSE_FACTOR)}")
    dense = DENSE_FACTOR[regime] * shape.matmul_params * tokens
    attention = ATTENTION_FACTOR * shape.layers * shape.hidden * width_sum
    return float(dense + attention)


def run_flops(shape: EncoderShape, regime: str, count: TokenCount) -> dict[str, float]:
    """Training FLOPs of one run over its padded batches and over its real tokens only."""
    return {
        "flops_padded": train_flops(shape, regime, count.padded, count.padded_sq),
        "flops_real": train_flops(shape, regime, count.real, count.real_sq),
        "padding_share": count.padding_share,
    }
