"""An exponential moving average of the weights that the test and the artifacts actually use."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMA(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging, with the averaged weights kept when the best epoch is restored.

    During fit Lightning validates (and so selects the best epoch by) the averaged weights, and its
    checkpoints hold them as `state_dict`, the training weights aside. But restoring that checkpoint
    for the test puts the training weights back (so that fit could resume): the test would run on
    weights nobody validated. Outside fit this keeps the averaged `state_dict` the checkpoint loaded.
    """

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == "fit":  # resuming training: the parent restores both models
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
