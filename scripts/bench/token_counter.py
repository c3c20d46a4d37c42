"""A Lightning callback that counts the tokens a lora_lab job's training batches hold.

Added to a benchmark job from the command line, without touching lora_lab:
    +callbacks.bench_tokens._target_=bench.token_counter.TokenCounter
    +callbacks.bench_tokens.out_path=<file>
(the job runs with scripts/ on PYTHONPATH). Counting one CPU mask per batch costs microseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl

from bench.flops import TokenCount


class TokenCounter(pl.Callback):
    """Counts padded and real tokens of every training batch; writes them to out_path at fit end."""

    def __init__(self, out_path: str):
        self.out_path = Path(out_path)
        self.count = TokenCount()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.count = TokenCount()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not isinstance(batch, dict) or "attention_mask" not in batch:
            raise TypeError(
                "bench TokenCounter needs dict batches with an 'attention_mask' (lora_lab's PadCollator); "
                f"got {type(batch).__name__}: update scripts/bench/token_counter.py to the new batch format"
            )
        self.count.add(batch["attention_mask"])

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_path.write_text(json.dumps(self.count.to_dict(), indent=2))
