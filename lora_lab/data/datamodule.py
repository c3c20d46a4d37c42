"""The Lightning DataModule: source rows -> label ids -> token ids -> length-grouped batches."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from lora_lab.data.batching import LengthGroupedBatchSampler, PadCollator, TokenizedSplit
from lora_lab.data.sources import Source
from lora_lab.data.splits import Split


class TextClassificationDataModule(pl.LightningDataModule):
    """Loads a Source once, fixes the label map from the training split, tokenizes every split.

    `labels` may be given (re-evaluation of a saved job): then the saved map is used as is and
    a label outside it is an error rather than a silent re-numbering.
    """

    def __init__(
        self,
        source: Source,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        max_length: int = 128,
        group_by_length: bool = True,
        seed: int = 0,
        labels: Sequence[str] | None = None,
    ):
        super().__init__()
        self.source, self.tokenizer = source, tokenizer
        self.batch_size, self.eval_batch_size, self.max_length = batch_size, eval_batch_size, max_length
        self.group_by_length, self.seed = group_by_length, seed
        self.labels: list[str] | None = list(labels) if labels is not None else None
        self.splits: dict[str, Split] = {}
        self.tokenized: dict[str, TokenizedSplit] = {}
        self.truncated: dict[str, float] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.tokenized:
            return
        self.splits = self.source.load()
        if self.labels is None:
            self.labels = sorted(set(self.splits["train"].labels))
        label_ids = {label: i for i, label in enumerate(self.labels)}
        for name, split in self.splits.items():
            unknown = sorted(set(split.labels) - set(label_ids))
            if unknown:
                raise ValueError(f"{name} split has labels outside the label map {self.labels}: {unknown}")
            encoded = self.tokenizer(split.texts, truncation=True, max_length=self.max_length)["input_ids"]
            self.tokenized[name] = TokenizedSplit(encoded, [label_ids[y] for y in split.labels])
            self.truncated[name] = sum(len(ids) >= self.max_length for ids in encoded) / max(1, len(encoded))

    @property
    def id2label(self) -> dict[int, str]:
        assert self.labels is not None, "call setup() first"
        return dict(enumerate(self.labels))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.tokenized[split]
        sampler = LengthGroupedBatchSampler(
            data.lengths,
            self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            seed=self.seed,
            group=self.group_by_length,
        )
        return DataLoader(data, batch_sampler=sampler, collate_fn=PadCollator(self.tokenizer.pad_token_id))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
