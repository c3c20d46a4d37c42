"""Resume a killed job exactly: atomic checkpoints, the state Lightning leaves out, and when to resume.

Every `callbacks.resume_checkpoint.every_n_train_steps` optimizer steps, checkpoints/last.ckpt holds
the whole training state: weights, optimizer, LR scheduler and Lightning's loop counters (Lightning),
plus what ResumeState adds, the batches already trained in the current epoch and the RNG states.
The training sampler's order is a function of (seed, epoch) alone (LengthGroupedBatchSampler), so
skipping those batches continues the very sequence the killed run was in. On CPU the resumed job
ends with the same test metrics and adapter bytes as an uninterrupted one
(tests/integration/test_resume.py); bf16 autocast on CPU is deterministic too.

`python -m lora_lab.train <same overrides> resume=true hydra.run.dir=<the job's dir>` continues it.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lora_lab.errors import ConfigError

log = logging.getLogger(__name__)
RESUME_CHECKPOINT = Path("checkpoints") / "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temp file beside the target, fsync, then os.replace: a kill during a save
    leaves the previous checkpoint whole, never a truncated one under the checkpoint's name."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class ResumeState(pl.Callback):
    """Saves, in every full checkpoint, the epoch and the number of its batches already trained, and
    the RNG states; on resume, restores the RNG states and has the sampler skip those batches."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._loaded: dict[str, Any] | None = None

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
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": _numpy_state(),
                    **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict or None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._loaded is None:
            return
        state, self._loaded = self._loaded, None
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if state["epoch"] == trainer.current_epoch and 0 < state["batches"] < trainer.num_training_batches:
            sampler = trainer.train_dataloader.batch_sampler
            if not hasattr(sampler, "skip"):  # not lora_lab's sampler: it cannot continue where the job stopped
                raise ConfigError(f"resume=true: the training loader's batch sampler ({type(sampler).__name__}) cannot "
                                  f"skip the {state['batches']} batches already trained in epoch {state['epoch']}; "
                                  "use lora_lab's data module (LengthGroupedBatchSampler) or start the job anew")
            sampler.skip(state["epoch"], state["batches"])
            # Lightning warns that a plain DataLoader cannot resume mid-epoch; the sampler's skip does.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def _numpy_state() -> tuple:
    """numpy's global RNG state as plain Python values: Lightning resumes with torch.load(weights_only=True),
    which refuses numpy arrays."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)


def resume_checkpoint(run_dir: Path, resume: bool) -> Path | None:
    """With resume=true, the killed job's last full checkpoint (None: it stopped before writing one,
    and trains from the start, which is where it was)."""
    if not resume:
        return None
    path = run_dir / RESUME_CHECKPOINT
    if path.is_file():
        log.info("resume=true: continuing from %s", path)
        return path
    log.info("resume=true: the job stopped before its first checkpoint (%s); training from the start", path)
    return None
