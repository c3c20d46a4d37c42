"""The Lightning DataModule: source rows -> label ids -> token ids -> length-grouped batches."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from lora_lab.data import cache
from lora_lab.data.batching import LengthGroupedBatchSampler, PadCollator, TokenizedSplit
from lora_lab.data.settings import check_data_settings
from lora_lab.data.sources import Source
from lora_lab.data.splits import Split
from lora_lab.data.truncation import AUTO, Truncation, auto_length

log = logging.getLogger(__name__)


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
        max_length: int | str = AUTO,
        group_by_length: bool = True,
        seed: int = 0,
        labels: Sequence[str] | None = None,
        cache_dir: str | None = None,
        shots_per_class: int | None = None,
        max_length_cap: int = 512,
        truncation: str = "head",
        head_tokens: int | None = None,
        long_text: str = "truncate",
        max_chunks: int = 4,
        train_rows: int | None = None,
    ):
        """max_length, truncation, head_tokens, long_text, max_chunks: how long texts become token
        ids (data/truncation.py). Checked by data/settings.py, which config validation also calls before any
        model loads."""
        super().__init__()
        self.source, self.tokenizer = source, tokenizer
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        # The requested length ("auto" or a number); `max_length` is the resolved one, set by setup().
        self.length_spec, self.max_length_cap = max_length, max_length_cap
        self.max_length: int | None = max_length if isinstance(max_length, int) else None
        # The constructor's own arguments, so a datamodule for other rows (lora_lab.eval's file) cuts alike.
        self.cut_settings = {
            "truncation": truncation,
            "head_tokens": head_tokens,
            "long_text": long_text,
            "max_chunks": max_chunks,
        }
        self.group_by_length, self.seed = group_by_length, seed
        self.labels: list[str] | None = list(labels) if labels is not None else None
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        check_data_settings(
            batch_size,
            eval_batch_size,
            max_length,
            max_length_cap,
            shots_per_class,
            truncation,
            head_tokens,
            long_text,
            max_chunks,
            train_rows,
        )
        self.shots_per_class, self.train_rows = shots_per_class, train_rows
        self.splits: dict[str, Split] = {}
        self.tokenized: dict[str, TokenizedSplit] = {}
        self.truncated: dict[str, float] = {}
        self.full_lengths: dict[str, list[int]] = {}  # tokens per text before truncation
        self.problems: list[str] = []

    @property
    def truncation(self) -> Truncation:
        """How this job's texts are cut to max_length (resolved by setup() when it is auto)."""
        assert self.max_length is not None, "call setup() first: data.max_length=auto reads the training texts"
        return self._cutter(self.max_length)

    def _cutter(self, max_length: int) -> Truncation:
        c = self.cut_settings
        return Truncation(max_length, c["truncation"], c["head_tokens"], c["long_text"], c["max_chunks"])

    def setup(self, stage: str | None = None) -> None:
        """Load, validate, tokenize: from the cache when this source + tokenizer + max_length was seen."""
        if self.tokenized:
            return
        entry = None
        if self.cache_dir is not None:
            key = cache.cache_key(self.source.identity(), self.tokenizer, self.length_key())
            entry = cache.load(self.cache_dir, key)
        if entry is None:
            entry = self._build_entry()
            if self.cache_dir is not None:
                try:
                    cache.save(self.cache_dir, key, entry)
                except TypeError as err:  # the job still runs on the rows just built, uncached
                    log.warning(
                        "Tokenized splits not cached (%s): extra columns must hold JSON values "
                        "(str, int, float, bool, null) to be cached; cast them in the source",
                        err,
                    )
        else:
            log.info("Tokenized splits from the cache (%s)", self.cache_dir)
        self.problems, self.truncated = entry["problems"], entry["truncated"]
        self.max_length, self.full_lengths = entry["max_length"], entry["full_lengths"]
        self.splits = {name: Split(d["texts"], d["labels"], d["extra"]) for name, d in entry["splits"].items()}
        if self.labels is None:
            self.labels = sorted(set(self.splits["train"].labels))
        label_ids = {label: i for i, label in enumerate(self.labels)}
        for name, split in self.splits.items():
            unknown = sorted(set(split.labels) - set(label_ids))
            if unknown:
                raise ValueError(f"{name} split has labels outside the label map {self.labels}: {unknown}")
            ids = entry["splits"][name]["input_ids"]
            self.tokenized[name] = TokenizedSplit(ids, [label_ids[y] for y in split.labels])
        if self.shots_per_class is not None:
            self._keep_shots(self.shots_per_class)
        if self.train_rows is not None:
            self._keep_rows(self.train_rows)

    def _keep_rows(self, n: int) -> None:
        """A learning curve's point: keep n seeded random training rows, one of every label first (so each
        label can be learnt and scored), the rest drawn from all rows; validation and test stay whole."""
        train = self.splits["train"]
        if n >= len(train):
            if n > len(train):
                self.problems.append(f"train: train_rows={n} but the split has {len(train)} rows: all kept")
            return
        rng = random.Random(self.seed)
        order = list(range(len(train)))
        rng.shuffle(order)
        first: dict[str, int] = {}
        for i in order:
            first.setdefault(train.labels[i], i)
        if len(first) > n:
            self.problems.append(
                f"train: train_rows={n} is fewer than the {len(first)} labels: {len(first) - n} labels have no "
                "training row"
            )
        keep = list(first.values())[:n]
        chosen = set(keep)
        keep += [i for i in order if i not in chosen][: n - len(keep)]
        self._keep_train(sorted(keep))

    def _keep_train(self, keep: list[int]) -> None:
        """Keep these training rows (indices, sorted) in both the texts and the token ids."""
        self.splits["train"] = self.splits["train"].select(keep)
        full = self.tokenized["train"]
        self.tokenized["train"] = TokenizedSplit([full.input_ids[i] for i in keep], [full.labels[i] for i in keep])

    def _keep_shots(self, shots: int) -> None:
        """Few-shot training: keep `shots` seeded random training rows per label; validation and
        test stay whole, so few-shot and full-data jobs are scored on the same rows."""
        by_label: dict[str, list[int]] = {}
        for i, label in enumerate(self.splits["train"].labels):
            by_label.setdefault(label, []).append(i)
        rng = random.Random(self.seed)
        keep: list[int] = []
        for label, rows in sorted(by_label.items()):
            if len(rows) < shots:
                self.problems.append(
                    f"train: label {label!r} has {len(rows)} row(s), fewer than shots_per_class={shots}: all kept"
                )
            keep.extend(rng.sample(rows, min(shots, len(rows))))
        self._keep_train(sorted(keep))

    def length_key(self) -> dict:
        """What decides the token ids besides source and tokenizer: the cache key's length part."""
        return {"max_length": self.length_spec, "cap": self.max_length_cap, **self.cut_settings}

    def _build_entry(self) -> dict:
        """Rows and token ids of every split, each text's untruncated length, the share truncated."""
        splits = self.source.load()
        # Each text tokenized once, untruncated: its real length, then the cut (auto reads the lengths first).
        full_ids = {name: self.tokenizer(split.texts, verbose=False)["input_ids"] for name, split in splits.items()}
        full = {name: [len(row) for row in rows] for name, rows in full_ids.items()}
        max_length = self.max_length
        if max_length is None:
            max_length = auto_length(full["train"], self.max_length_cap)
            log.info(
                "data.max_length=auto: %d tokens (95%% of the training texts fit; cap %d)",
                max_length,
                self.max_length_cap,
            )
        cutter = self._cutter(max_length)
        out, truncated, problems = {}, {}, list(self.source.report.problems)
        for name, split in splits.items():
            ids = cutter.cut(self.tokenizer, full_ids[name])
            n_long = sum(n > max_length for n in full[name])
            if n_long:
                problems.append(
                    f"{name}: {n_long} of {len(ids)} texts ({n_long / len(ids):.1%}) longer than "
                    f"max_length={max_length} tokens: each keeps {cutter.describe()}"
                )
            truncated[name] = n_long / max(1, len(ids))
            out[name] = {"texts": split.texts, "labels": split.labels, "extra": split.extra, "input_ids": ids}
        return {
            "splits": out,
            "truncated": truncated,
            "problems": problems,
            "max_length": max_length,
            "full_lengths": full,
        }

    def label_descriptions(self) -> list[str]:
        """Each label in words, in label-id order (the dataset's label_descriptions, else its name)."""
        assert self.labels is not None, "call setup() first"
        return [self.source.describe(label) for label in self.labels]

    @property
    def id2label(self) -> dict[int, str]:
        assert self.labels is not None, "call setup() first"
        return dict(enumerate(self.labels))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.tokenized[split]
        # Under DDP each rank loads its own share (the sampler shards; the trainer configs set
        # use_distributed_sampler: false, since Lightning's DistributedSampler would pad a split with
        # repeated rows). No trainer (a loader asked for directly, as export's ONNX check does): every row.
        trainer = self.trainer
        sampler = LengthGroupedBatchSampler(
            data.lengths,
            self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            seed=self.seed,
            group=self.group_by_length,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            windows=data.windows if max(data.windows, default=1) > 1 else None,  # chunked texts
        )
        return DataLoader(data, batch_sampler=sampler, collate_fn=PadCollator(self.tokenizer.pad_token_id))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
