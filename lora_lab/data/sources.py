"""Where rows come from: one Source class per dataset or file format (the `dataset/` config group).

A Source reads its raw rows (`read`); `load` validates them and returns train/validation/test:

    read -> drop empty texts / missing labels (counted; error above max_invalid_fraction)
         -> drop exact duplicate training rows (counted)            -> carve missing splits (stratified)
         -> train/test leakage (error | drop | allow)       -> label checks (single class, unseen labels)

Every repair is counted in `self.report` (what `python -m lora_lab.data` shows); nothing is silent.
"""

from __future__ import annotations

import logging
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from lora_lab.data.splits import Split, stratified_split
from lora_lab.errors import DataError

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
LEAKAGE_POLICIES = ("error", "drop", "allow")


@dataclass
class DataReport:
    """What loading found and repaired: counts by kind, and one line per problem."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, kind: str, n: int, message: str) -> None:
        if n:
            self.counts[kind] = self.counts.get(kind, 0) + n
            self.problems.append(message)
            log.warning(message)


class Source(ABC):
    """Base of every `conf/dataset/*.yaml` target."""

    def __init__(
        self,
        name: str,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        drop_duplicates: bool = True,
        leakage: str = "error",
        max_invalid_fraction: float = 0.05,
        max_length: int | None = None,
        label_descriptions: dict[str, str] | None = None,
        subset: dict[str, str] | None = None,
    ):
        if leakage not in LEAKAGE_POLICIES:
            raise DataError(f"dataset.leakage={leakage!r}: choose one of {LEAKAGE_POLICIES}")
        self.name = name
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.drop_duplicates, self.leakage, self.max_invalid_fraction = drop_duplicates, leakage, max_invalid_fraction
        # The token length this data needs (long transcripts); data.max_length reads it, else the backbone's.
        self.max_length = max_length
        # What each label means in words, for label-similarity (zero-shot) regimes; a label
        # missing here is described by its own name.
        self.label_descriptions = dict(label_descriptions or {})
        # Keep only the rows whose extra columns hold these values ({"domain": "books"}), taken
        # from every split AFTER the whole dataset is split: the subset's test rows are then
        # exactly the whole dataset's test rows of that value, and its training rows never
        # overlap them, so a model trained on the subset and one trained on everything are
        # scored on the same rows (lora_lab.domains relies on this).
        self.subset = {str(k): str(v) for k, v in subset.items()} if subset else None
        self.report = DataReport()

    @abstractmethod
    def read(self) -> dict[str, Split]:
        """Raw splits as the source has them: "train" always, "validation"/"test" where official."""

    def describe(self, label: str) -> str:
        """The label in words: its configured description, else its name ("card_arrival" -> "card arrival")."""
        return self.label_descriptions.get(label) or label.replace("_", " ").replace("-", " ")

    def files(self) -> list[Path]:
        """Files the rows come from (their size and mtime key the tokenized-data cache)."""
        return []

    def check_files(self) -> None:
        """Fail before any heavy work if a file this source reads is missing (config validation calls it)."""
        for path in self.files():
            if not path.is_file():
                raise DataError(
                    f"dataset={self.name}: {path}: no such file (resolved to {path.resolve()}); fix the path "
                    "(dataset.path / dataset.test_path for your own files, LORA_LAB_DATA_DIR for the public sets)"
                )

    def identity(self) -> dict:
        """Everything that determines the rows: the class, its settings, its files' and its code's stamps."""
        settings = {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(self).items()
            if k not in ("report", "label_descriptions")
        }
        code = Path(sys.modules[type(self).__module__].__file__)  # a generator edit is a new dataset
        stamps = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in [code, *self.files()] if p.exists()]
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", **settings, "files": stamps}

    def load(self) -> dict[str, Split]:
        """Read, validate, repair (counted) and split into exactly train/validation/test."""
        self.report = DataReport()
        raw = {name: self._repair(split, name) for name, split in self.read().items()}
        missing = {"validation": self.val_fraction, "test": self.test_fraction}
        missing = {name: frac for name, frac in missing.items() if name not in raw}
        for name, frac in missing.items():
            if frac <= 0:
                key = "val_fraction" if name == "validation" else "test_fraction"
                raise DataError(f"dataset {self.name} has no {name} split and dataset.{key}=0; set it > 0")
        splits = {**raw, **stratified_split(raw["train"], missing, self.split_seed, self.name)}
        self._check_leakage(splits)
        if self.subset:
            splits = {name: self._keep_subset(split, name) for name, split in splits.items()}
        _check_labels(splits, self.name)
        return {name: splits[name] for name in SPLITS}

    def _repair(self, split: Split, name: str) -> Split:
        where = f"{self.name}/{name}"
        keep = [i for i, (t, y) in enumerate(zip(split.texts, split.labels)) if t and t.strip() and y not in (None, "")]
        invalid = len(split) - len(keep)
        if invalid > self.max_invalid_fraction * len(split):
            raise DataError(
                f"{where}: {invalid} of {len(split)} rows have an empty text or a missing label "
                f"(over dataset.max_invalid_fraction={self.max_invalid_fraction}); check the "
                "text_column/label_column settings and the file"
            )
        self.report.add(
            "empty_or_unlabelled", invalid, f"{where}: dropped {invalid} row(s) with an empty text or missing label"
        )
        # Duplicates are dropped from training rows only (before validation/test are carved from
        # them); an official validation/test split is a benchmark and stays as published.
        if self.drop_duplicates and name == "train":
            seen: set[tuple[str, str]] = set()
            unique = []
            for i in keep:
                row = (split.texts[i], split.labels[i])
                if row not in seen:
                    seen.add(row)
                    unique.append(i)
            self.report.add(
                "duplicates",
                len(keep) - len(unique),
                f"{where}: dropped {len(keep) - len(unique)} exact duplicate row(s)",
            )
            keep = unique
        labels_of: dict[str, set[str]] = {}
        for i in keep:
            labels_of.setdefault(split.texts[i], set()).add(split.labels[i])
        conflicting = sum(len(v) > 1 for v in labels_of.values())
        self.report.add(
            "conflicting_labels", conflicting, f"{where}: {conflicting} text(s) carry more than one label (kept)"
        )
        return split.select(keep) if len(keep) < len(split) else split

    def _keep_subset(self, split: Split, name: str) -> Split:
        """The rows of `split` whose extra columns equal self.subset (values compared as strings)."""
        for column in self.subset:
            if column not in split.extra:
                raise DataError(
                    f"dataset.subset filters on column {column!r}, but {self.name} rows carry only "
                    f"{sorted(split.extra) or 'text and label'}; name one of those (a csv/jsonl/parquet "
                    f"file keeps a column with dataset.extra_columns=[{column}])"
                )
        keep = [i for i in range(len(split)) if all(str(split.extra[c][i]) == v for c, v in self.subset.items())]
        if not keep:
            found = {c: sorted({str(x) for x in split.extra[c]}) for c in self.subset}
            raise DataError(f"dataset.subset={self.subset}: no {name} rows of {self.name} match; values found: {found}")
        log.info("%s/%s: subset %s keeps %d of %d rows", self.name, name, self.subset, len(keep), len(split))
        return split.select(keep)

    def _check_leakage(self, splits: dict[str, Split]) -> None:
        """Validation texts also in train, or test texts also in train/validation, inflate every metric."""
        exact = {t.strip() for t in splits["train"].texts}
        loose = {_loose(t) for t in splits["train"].texts}
        for name in ("validation", "test"):
            split = splits[name]
            leaked = [i for i, t in enumerate(split.texts) if t.strip() in exact]
            near = sum(_loose(t) in loose for t in split.texts) - len(leaked)
            self.report.add(
                "near_duplicates",
                near,
                f"{self.name}: {near} {name} text(s) equal an earlier split's text up to case and spacing",
            )
            exact.update(t.strip() for t in split.texts)
            loose.update(_loose(t) for t in split.texts)
            if not leaked:
                continue
            message = (
                f"{self.name}: {len(leaked)} {name} text(s) also appear in "
                f"{'train' if name == 'validation' else 'train/validation'}"
            )
            if self.leakage == "error":
                raise DataError(
                    f"{message} (leakage). Set dataset.leakage=drop to remove them from {name}, "
                    "or dataset.leakage=allow to keep them"
                )
            if self.leakage == "drop":
                splits[name] = split.select(sorted(set(range(len(split))) - set(leaked)))
                message += f"; dropped from {name}"
            self.report.add("leakage", len(leaked), message)


def _loose(text: str) -> str:
    """A text up to case and spacing: the README's "equal when case and outer spaces are ignored"."""
    return " ".join(text.split()).casefold()


def _check_labels(splits: dict[str, Split], name: str) -> None:
    train_labels = set(splits["train"].labels)
    if len(train_labels) < 2:
        raise DataError(
            f"dataset {name}: the training split has a single label {sorted(train_labels)}; "
            "a classifier needs two or more"
        )
    for split_name in ("validation", "test"):
        unseen = sorted(set(splits[split_name].labels) - train_labels)
        if unseen:
            raise DataError(
                f"dataset {name}: {split_name} labels never seen in training: {unseen}. "
                "Add training rows for them or drop those rows."
            )
