"""callbacks.resource_monitor: the compute side of every comparison: time, throughput, latency and peak memory."""

from __future__ import annotations

import resource
import time
from typing import Any

import lightning.pytorch as pl
import torch


class ResourceMonitor(pl.Callback):
    """Measures a job without host syncs in the training loop (batch sizes are CPU-side shapes).

    time/train_s counts the training epochs only (validation subtracted), so examples/s compares
    regimes on the work they do, not on how often they are validated. Under DDP the example counts
    are every rank's together (each rank sees its own share); times and memory are this rank's.

    A resumed job (resume=true) reports the whole job: every checkpoint carries the training and
    validation seconds and the examples so far (state_dict), and the run that resumes adds its own
    to them. The work between the last checkpoint and the kill was trained again, so it counts once.
    Peak memory is the last run's.
    """

    def __init__(self) -> None:
        self.results: dict[str, float] = {}
        self._examples = 0
        self._val_s = 0.0
        self._val_t0: float | None = None  # set while a validation loop runs
        self._fit_t0: float | None = None
        self._before = {"train_s": 0.0, "val_s": 0.0, "examples": 0}  # earlier runs of a resumed job

    @staticmethod
    def _now(trainer: pl.Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # CUDA runs asynchronously: time the work, not the launches
        return time.perf_counter()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._examples, self._val_s = 0, 0.0
        self._fit_t0 = self._now(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._examples += batch["labels"].shape[0]

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_t0 = self._now(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and self._val_t0 is not None:
            self._val_s += self._now(trainer) - self._val_t0
        self._val_t0 = None

    def _so_far(self, now: float) -> dict[str, Any]:
        """The job's training and validation seconds and examples up to `now`, earlier runs included
        (a validation loop still running counts as validation)."""
        if self._fit_t0 is None:
            return dict(self._before)
        val_s = self._val_s + (now - self._val_t0 if self._val_t0 is not None else 0.0)
        return {
            "train_s": self._before["train_s"] + now - self._fit_t0 - val_s,
            "val_s": self._before["val_s"] + val_s,
            "examples": self._before["examples"] + self._examples,
        }

    def state_dict(self) -> dict[str, Any]:
        return self._so_far(time.perf_counter())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._before.update(state_dict)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        job = self._so_far(self._now(trainer))
        train_s, val_s = job["train_s"], job["val_s"]
        # Under DDP each rank resumes from rank 0's count; ranks train equal numbers of batches.
        examples = all_ranks(trainer, job["examples"])
        self.results.update(
            {
                "time/fit_s": train_s + val_s,
                "time/train_s": train_s,
                "time/val_s": val_s,
                "train/examples_seen": examples,
                "throughput/train_examples_per_s": examples / train_s if train_s > 0 else 0.0,
            }
        )
        self.results.update(peak_memory(trainer))

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test_examples, self._test_t0 = 0, self._now(trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._test_examples += batch["labels"].shape[0]

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        test_s = self._now(trainer) - self._test_t0
        examples = all_ranks(trainer, self._test_examples)
        self.results.update(
            {
                "time/test_s": test_s,
                "throughput/test_examples_per_s": examples / test_s if test_s > 0 else 0.0,
                # Batched latency: the test loader's batches, length-sorted, as a server would batch.
                "latency/test_ms_per_example": 1000 * test_s / max(1, examples),
            }
        )
        self.results.update(peak_memory(trainer))


def all_ranks(trainer: pl.Trainer, count: int) -> int:
    """A count summed over the DDP ranks (every rank calls this at the same hook); one process: count."""
    if trainer.world_size == 1:
        return count
    return int(trainer.strategy.reduce(torch.tensor(count, dtype=torch.long), reduce_op="sum"))


def peak_memory(trainer: pl.Trainer) -> dict[str, float]:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB), and CUDA's peak."""
    out = {"memory/peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if trainer.strategy.root_device.type == "cuda":
        out["memory/peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out
