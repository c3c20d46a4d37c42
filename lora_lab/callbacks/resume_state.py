"""callbacks.resume_state: the state a resumed job needs that Lightning's checkpoint leaves out.

Lightning's full checkpoint (callbacks.resume_checkpoint) holds the weights, optimizer, scheduler and
loop counters; ResumeState adds the batches already trained in the current epoch and the RNG states,
so `resume=true` continues the very batch sequence the killed run was in (lora_lab/job/checkpointing.py).
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from lora_lab.errors import ConfigError


class ResumeState(pl.Callback):
    """Saves, in every full checkpoint, the epoch and the number of its batches already trained, and
    the RNG states; on resume, restores the RNG states and has the sampler skip those batches (or, for
    a checkpoint saved at an epoch's end, restores the states at the next epoch's start)."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._loaded: dict[str, Any] | None = None
        self._rng_at_epoch_start: dict[str, Any] | None = None
        self._at_epoch_end = False  # between an epoch's end hooks and the next epoch's start

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None:
            return {}
        return {
            "epoch": trainer.current_epoch,
            # Saved from on_train_batch_end: `processed` counts the batch whose step just ran.
            "batches": trainer.fit_loop.epoch_loop.batch_progress.current.processed,
            # Saved from an on_train_epoch_end hook (the auto search's pause), not after a batch.
            "at_epoch_end": self._at_epoch_end,
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": _numpy_state(),
                **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict or None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._loaded is None:
            return
        state, self._loaded = self._loaded, None
        if state.get("at_epoch_end"):
            # Saved at an epoch's end (the auto search's pause, lora_lab/auto/cut.py). The uninterrupted
            # run went from there to the next epoch's start and made that epoch's loader iterator, whose
            # base seed DataLoader draws from torch's RNG: one draw before its first batch. The resumed
            # run ends the saved epoch again and makes the next epoch's iterator before any epoch hook,
            # so at the next epoch's start the states go back and that one draw is made here.
            self._rng_at_epoch_start = state["rng"]
            return
        _set_rng(state["rng"])
        if state["epoch"] == trainer.current_epoch and 0 < state["batches"] < trainer.num_training_batches:
            sampler = trainer.train_dataloader.batch_sampler
            if not hasattr(sampler, "skip"):  # not lora_lab's sampler: it cannot continue where the job stopped
                raise ConfigError(
                    f"resume=true: the training loader's batch sampler ({type(sampler).__name__}) cannot "
                    f"skip the {state['batches']} batches already trained in epoch {state['epoch']}; "
                    "use lora_lab's data module (LengthGroupedBatchSampler) or start the job anew"
                )
            sampler.skip(state["epoch"], state["batches"])
            # Lightning warns that a plain DataLoader cannot resume mid-epoch; the sampler's skip does.
            warnings.filterwarnings(
                "ignore", message="You're resuming from a checkpoint that ended before the epoch ended"
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._at_epoch_end = True

    def on_train_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self._at_epoch_end = False

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._at_epoch_end = False
        if self._rng_at_epoch_start is not None:
            rng, self._rng_at_epoch_start = self._rng_at_epoch_start, None
            _set_rng(rng)
            torch.empty((), dtype=torch.int64).random_()  # the iterator's base seed (see on_train_start)


def _set_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _numpy_state() -> tuple:
    """numpy's global RNG state as plain Python values: Lightning resumes with torch.load(weights_only=True),
    which refuses numpy arrays."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)
