"""Tokenized splits, length-grouped batches and dynamic padding.

Short texts padded to the longest text of a random batch waste most of the compute on pad
tokens: Banking77 texts run from 2 to 80 tokens, so a random batch of 32 is mostly padding.
Grouping texts of similar length into one batch cuts that; shuffling windows of batches keeps
the order random enough for SGD (the same trick as HF's LengthGroupedSampler).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

# A text's token ids: one row, or (data.long_text=chunk) a list of windows, each a row.
Row = list[int] | list[list[int]]


def windows_of(row: Row) -> list[list[int]]:
    """A text's rows: its windows when chunked, else its one row."""
    return row if row and isinstance(row[0], list) else [row]


def flatten_windows(rows: Sequence[Row]) -> tuple[list[list[int]], list[int]]:
    """Every text's windows in one list, and for each window the index of its text."""
    flat, owner = [], []
    for i, row in enumerate(rows):
        for window in windows_of(row):
            flat.append(window)
            owner.append(i)
    return flat, owner


def average_windows(values: torch.Tensor, owner: torch.Tensor | Sequence[int], n_texts: int) -> torch.Tensor:
    """(windows, k) -> (n_texts, k): each text's mean over its windows (owner[w] = text of window w);
    `values` as they are when each text has one window.

    Logits of a linear head average exactly as the embeddings they come from: mean_w (W e_w + b) =
    W mean_w(e_w) + b."""
    if values.shape[0] == n_texts:  # every text has at least one window: as many means as windows
        return values
    owner = torch.as_tensor(owner, dtype=torch.long, device=values.device)
    counts = torch.bincount(owner, minlength=n_texts).clamp(min=1).to(values.dtype)
    sums = torch.zeros(n_texts, values.shape[1], dtype=values.dtype, device=values.device).index_add_(0, owner, values)
    return sums / counts.unsqueeze(1)


def length_batches(
    rows: Sequence[list[int]], size: int, collate: PadCollator, group: bool = True
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(row indices, padded batch) of token-id rows, `size` at a time in order of length (group=True,
    the evaluation loaders' order: each batch pads to rows of its own length) or as given."""
    for indices in LengthGroupedBatchSampler([len(row) for row in rows], size, shuffle=False, group=group):
        yield indices, collate([(rows[i], 0) for i in indices])


class TokenizedSplit(Dataset):
    """Token ids (unpadded) and label ids of one split, tokenized once up front. A row of a chunked
    split is a list of windows; its length (what batches group by) is its tokens over all windows."""

    def __init__(self, input_ids: list[Row], labels: list[int]):
        self.input_ids, self.labels = input_ids, labels
        self.lengths = [sum(len(w) for w in windows_of(ids)) for ids in input_ids]
        self.windows = [len(windows_of(ids)) for ids in input_ids]  # rows each text puts into a batch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.input_ids[i], self.labels[i]


class PadCollator:
    """Pads a batch to its longest row (right padding) and builds the attention mask.

    Chunked texts (rows that are lists of windows) become one row per window, with `text_index`
    naming each window's text; `labels` stays one per text (see average_windows).

    `pad_to_multiple_of` (as in HF's collators) rounds the width up, never past `max_width` unless a
    row is longer: fewer distinct shapes, for kernels compiled per shape (the server's bf16 path)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1, max_width: int | None = None):
        self.pad_token_id, self.multiple, self.max_width = pad_token_id, pad_to_multiple_of, max_width

    def __call__(self, rows: Sequence[tuple[Row, int]]) -> dict[str, torch.Tensor]:
        windows, owner = flatten_windows([ids for ids, _ in rows])
        longest = max(len(ids) for ids in windows)
        width = -(-longest // self.multiple) * self.multiple
        if self.max_width is not None:
            width = max(longest, min(width, self.max_width))
        input_ids = torch.full((len(windows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(windows), width), dtype=torch.long)
        for i, ids in enumerate(windows):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
        labels = torch.tensor([label for _, label in rows], dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if len(windows) != len(rows):  # some text has several windows (one each: the rows as they are)
            batch["text_index"] = torch.tensor(owner, dtype=torch.long)
        return batch


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths.

    shuffle=True: each epoch, shuffle all rows, cut windows of `window` batches, sort each window
    by length, cut it into batches and shuffle the batch order. shuffle=False: sort everything by
    length (evaluation: order does not matter for metrics, padding does). group=False gives
    plain random (or sequential) batches, for comparison.

    Under DDP (world_size > 1) each rank iterates its own share, drawn from the one order every rank
    computes alike (same seed, same epoch): training, batches[rank::world_size] cut to an equal
    count (every optimizer step all-reduces, so a rank with one batch more would wait forever; at
    most world_size - 1 batches of an epoch go unused); evaluation, rows[rank::world_size] of the
    length-sorted rows, each row on exactly one rank (torchmetrics sums the ranks' counts).

    `windows` (data.long_text=chunk: per text, its windows) makes an evaluation batch hold at most
    batch_size windows rather than texts (a text with more windows than that goes alone). Sorted by
    length, the longest texts batch together: 64 reviews of up to 4 windows of 512 tokens are up to
    256 sequences in one forward pass; counting windows bounds the peak memory at the same accuracy
    (docs/benchmarks.md, long texts). Training batches
    keep counting texts: the batch size is also the optimizer's, and a sum over windows would
    change it from step to step.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        group: bool = True,
        window: int = 50,
        rank: int = 0,
        world_size: int = 1,
        windows: Sequence[int] | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} outside world_size={world_size}")
        self.lengths, self.batch_size, self.shuffle = list(lengths), batch_size, shuffle
        self.seed, self.group, self.window, self.epoch = seed, group, window, 0
        self.rank, self.world_size = rank, world_size
        self.windows = list(windows) if windows is not None and not shuffle else None
        self._skip: tuple[int, int] | None = None  # (epoch, batches) already trained before a resume

    @property
    def sampler(self) -> LengthGroupedBatchSampler:
        """Lightning sets the epoch through `dataloader.batch_sampler.sampler.set_epoch` (and
        `dataloader.sampler`), never on a batch sampler itself (fabric's _set_sampler_epoch): without
        this, every epoch trained in epoch 0's order."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this each epoch, so every epoch has its own (reproducible) order."""
        self.epoch = epoch
        if self._skip is not None and self._skip[0] != epoch:
            self._skip = None

    def skip(self, epoch: int, batches: int) -> None:
        """Resume inside `epoch`: its first `batches` batches (of this rank's share) were trained before
        the job was killed. Every iteration of that epoch starts after them (Lightning may iterate more
        than once)."""
        self._skip = (epoch, batches)

    def __len__(self) -> int:
        if self.shuffle:
            return -(-len(self.lengths) // self.batch_size) // self.world_size
        if self.windows is not None:
            return sum(1 for _ in self)
        return -(-len(range(self.rank, len(self.lengths), self.world_size)) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the order is drawn at the first batch, not when the DataLoader makes its iterator.
        # On a resume Lightning makes that iterator before the epoch and the skip are set, and keeps it.
        n = len(self.lengths)
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else list(range(n))
        if self.group:
            span = self.batch_size * self.window if self.shuffle else n
            order = [
                i
                for start in range(0, n, span)
                for i in sorted(order[start : start + span], key=self.lengths.__getitem__, reverse=True)
            ]
        if not self.shuffle:  # evaluation: this rank's rows (not batches: a one-batch split still reaches every rank)
            order = order[self.rank :: self.world_size]
        batches = self._cut(order)
        if self.shuffle and self.group:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        if self.shuffle:  # training: this rank's equal share of the epoch's batches
            batches = batches[self.rank :: self.world_size][: len(batches) // self.world_size]
        if self._skip is not None and self._skip[0] == self.epoch:
            batches = batches[self._skip[1] :]
        yield from batches

    def _cut(self, order: list[int]) -> list[list[int]]:
        """Consecutive batches of `order`: batch_size rows each, or (windows) at most batch_size windows."""
        if self.windows is None:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        batches, batch, used = [], [], 0
        for i in order:
            if batch and used + self.windows[i] > self.batch_size:
                batches.append(batch)
                batch, used = [], 0
            batch.append(i)
            used += self.windows[i]
        return batches + [batch] if batch else batches
