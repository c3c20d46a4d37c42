"""What an exact resume rests on: checkpoints replaced atomically, and a training order that is a
function of (seed, epoch) which Lightning's own epoch call reaches, and which can skip a prefix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from lora_lab.data.batching import LengthGroupedBatchSampler
from lora_lab.job.checkpointing import AtomicCheckpointIO


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_whole(tmp_path: Path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def killed_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # what a kill leaves in the file being written
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path)["step"] == 1 and list(path.parent.iterdir()) == [path]  # no partial file either


def _epochs(sampler: LengthGroupedBatchSampler, epochs: int) -> list[list[list[int]]]:
    loader = DataLoader(list(range(40)), batch_sampler=sampler)
    orders = []
    for epoch in range(epochs):
        _set_sampler_epoch(loader, epoch)  # what Lightning's fit loop calls each epoch
        orders.append([batch.tolist() for batch in loader])
    return orders


def test_lightning_sets_the_epoch_so_each_epoch_has_its_own_reproducible_order():
    lengths = [i % 7 for i in range(40)]
    first, again = (
        _epochs(LengthGroupedBatchSampler(lengths, 4, shuffle=True, seed=3), 3),
        _epochs(LengthGroupedBatchSampler(lengths, 4, shuffle=True, seed=3), 3),
    )
    assert first == again  # a function of (seed, epoch)
    assert first[0] != first[1] != first[2]  # and a new order every epoch


def test_a_resumed_epoch_skips_the_batches_already_trained_and_the_next_epoch_does_not():
    lengths = [i % 7 for i in range(40)]
    full = _epochs(LengthGroupedBatchSampler(lengths, 4, shuffle=True, seed=3), 2)
    resumed = LengthGroupedBatchSampler(lengths, 4, shuffle=True, seed=3)
    loader = DataLoader(list(range(40)), batch_sampler=resumed)
    iterator = iter(loader)  # made before the epoch and the skip are known, as Lightning does on a resume
    _set_sampler_epoch(loader, 0)
    resumed.skip(0, 3)
    assert [batch.tolist() for batch in iterator] == full[0][3:]
    _set_sampler_epoch(loader, 1)
    assert [batch.tolist() for batch in loader] == full[1]
