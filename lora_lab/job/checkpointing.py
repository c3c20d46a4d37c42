"""Resume a killed job exactly: atomic checkpoints and when to resume.

Every `callbacks.resume_checkpoint.every_n_train_steps` optimizer steps, checkpoints/last.ckpt holds
the whole training state: weights, optimizer, LR scheduler and Lightning's loop counters (Lightning),
plus what ResumeState adds (lora_lab/callbacks/resume_state.py): the batches already trained in
the current epoch and the RNG states.
The training sampler's order is a function of (seed, epoch) alone (LengthGroupedBatchSampler), so
skipping those batches continues the very sequence the killed run was in. On CPU the resumed job
ends with the same test metrics and adapter bytes as an uninterrupted one
(tests/integration/test_resume.py); bf16 autocast on CPU is deterministic too.

`python -m lora_lab.train <same overrides> resume=true hydra.run.dir=<the job's dir>` continues it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

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


def relocate_checkpoints(source_dir: Path, target_dir: Path, drop_states: tuple[str, ...] = ()) -> Path:
    """Copy a job's checkpoints/ into another job dir, so that `resume=true` there continues the source
    job's training; returns the copied resume checkpoint.

    ModelCheckpoint keeps its best epoch (path and score) only when the resuming job's checkpoint dir is
    the one it saved (Lightning drops the score when `dirpath` changed, and the next epoch would count as
    the best however it scored): every path under the source's checkpoints/ is rewritten to the target's.
    drop_states: callback states left out (their state key's start, e.g. "Timer": max_time counts anew).
    Written atomically; the source is left as it is."""
    source, target = source_dir / RESUME_CHECKPOINT.parent, target_dir / RESUME_CHECKPOINT.parent
    checkpoint = torch.load(source_dir / RESUME_CHECKPOINT, map_location="cpu", weights_only=False)
    old, new = str(source), str(target)

    def moved(value: Any) -> Any:
        if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
            return new + value[len(old) :]
        if isinstance(value, dict):
            return {moved(k): moved(v) for k, v in value.items()}
        return value

    checkpoint["callbacks"] = {
        key: moved(state) for key, state in checkpoint.get("callbacks", {}).items() if not key.startswith(drop_states)
    }
    for other in source.glob("*.ckpt"):  # the best epoch's weights (callbacks.model_checkpoint)
        if other.name != RESUME_CHECKPOINT.name:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(other, target / other.name)
    AtomicCheckpointIO().save_checkpoint(checkpoint, target_dir / RESUME_CHECKPOINT)
    return target_dir / RESUME_CHECKPOINT
