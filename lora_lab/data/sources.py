"""Where rows come from: one Source class per dataset or file format (the `dataset/` config group).

A Source reads its raw rows (`read`), and `load` turns them into train/validation/test splits,
carving any split the source lacks from training rows with a stratified split.
"""

from __future__ import annotations

import csv
import json
from abc import ABC, abstractmethod
from pathlib import Path

from lora_lab.data.splits import DataError, Split, stratified_split
from lora_lab.data.synthetic_sales import generate_sales_notes

SPLITS = ("train", "validation", "test")


class Source(ABC):
    """Base class of every `conf/dataset/*.yaml` target."""

    def __init__(self, name: str, val_fraction: float = 0.15, test_fraction: float = 0.15, split_seed: int = 0):
        self.name = name
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    @abstractmethod
    def read(self) -> dict[str, Split]:
        """Raw splits as the source has them: "train" always, "validation"/"test" where official."""

    def load(self) -> dict[str, Split]:
        """Read, clean and split into exactly train/validation/test."""
        raw = {name: _drop_empty(split, f"{self.name}/{name}") for name, split in self.read().items()}
        missing = {"validation": self.val_fraction, "test": self.test_fraction}
        missing = {name: frac for name, frac in missing.items() if name not in raw}
        for name, frac in missing.items():
            if frac <= 0:
                raise DataError(f"dataset {self.name} has no {name} split and dataset.{_fraction_key(name)}=0")
        splits = {**raw, **stratified_split(raw["train"], missing, self.split_seed, self.name)}
        _check_labels(splits, self.name)
        return {name: splits[name] for name in SPLITS}


def _fraction_key(split: str) -> str:
    return "val_fraction" if split == "validation" else "test_fraction"


def _drop_empty(split: Split, where: str) -> Split:
    """Rows with an empty text or label cannot be learnt from: drop them, but never silently."""
    keep = [i for i, (t, y) in enumerate(zip(split.texts, split.labels)) if t and t.strip() and y not in (None, "")]
    dropped = len(split) - len(keep)
    if dropped:
        if dropped > 0.05 * len(split):
            raise DataError(
                f"{where}: {dropped} of {len(split)} rows have an empty text or label (over 5%); "
                "check the text_column/label_column settings and the file"
            )
        print(f"[lora_lab] {where}: dropped {dropped} row(s) with an empty text or label")
    return split.select(keep) if dropped else split


def _check_labels(splits: dict[str, Split], name: str) -> None:
    train_labels = set(splits["train"].labels)
    if len(train_labels) < 2:
        raise DataError(f"dataset {name}: the training split has a single label {sorted(train_labels)}; a classifier needs two or more")
    for split_name in ("validation", "test"):
        unseen = sorted(set(splits[split_name].labels) - train_labels)
        if unseen:
            raise DataError(
                f"dataset {name}: {split_name} labels never seen in training: {unseen}. "
                "Add training rows for them or drop those rows."
            )


class SyntheticSalesNotes(Source):
    """Synthetic B2B sales notes with five intents, generated deterministically (no files)."""

    def __init__(self, n_per_class: int = 400, noise: float = 0.3, generator_seed: int = 0, **split_args):
        super().__init__(**split_args)
        self.n_per_class, self.noise, self.generator_seed = n_per_class, noise, generator_seed

    def read(self) -> dict[str, Split]:
        rows = generate_sales_notes(self.n_per_class, seed=self.generator_seed, noise=self.noise)
        return {"train": Split([r["text"] for r in rows], [r["label"] for r in rows])}


class TableFile(Source):
    """The user's own CSV or JSON-lines file with a text and a label column."""

    def __init__(
        self,
        path: str,
        format: str = "csv",
        text_column: str = "text",
        label_column: str = "label",
        encoding: str = "utf-8",
        **split_args,
    ):
        super().__init__(**split_args)
        if format not in ("csv", "jsonl"):
            raise DataError(f"dataset.format={format!r}: use csv or jsonl")
        self.path, self.format = Path(path).expanduser(), format
        self.text_column, self.label_column, self.encoding = text_column, label_column, encoding

    def read(self) -> dict[str, Split]:
        if not self.path.is_file():
            raise DataError(
                f"dataset.path={self.path}: no such file (resolved to {self.path.resolve()}). "
                "Give an absolute path, or one relative to the directory you run from."
            )
        rows = self._rows()
        columns = list(rows[0]) if rows else []
        for key, column in (("text_column", self.text_column), ("label_column", self.label_column)):
            if column not in columns:
                raise DataError(f"{self.path}: no column {column!r} (dataset.{key}); columns found: {columns}")
        texts = [str(r[self.text_column] or "") for r in rows]
        labels = [None if r[self.label_column] is None else str(r[self.label_column]).strip() for r in rows]
        return {"train": Split(texts, labels)}

    def _rows(self) -> list[dict]:
        try:
            with open(self.path, encoding=self.encoding, newline="") as f:
                if self.format == "csv":
                    return list(csv.DictReader(f))
                return [json.loads(line) for line in f if line.strip()]
        except UnicodeDecodeError as err:
            raise DataError(
                f"{self.path}: bytes at offset {err.start} are not valid {self.encoding}; "
                "set dataset.encoding (e.g. latin-1) to the file's encoding"
            ) from err
        except json.JSONDecodeError as err:
            raise DataError(f"{self.path}: line {err.lineno} is not valid JSON: {err.msg}") from err
