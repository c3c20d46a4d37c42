"""Labelled text splits and the stratified split that carves validation/test from training rows."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from lora_lab.errors import DataError


@dataclass
class Split:
    """Parallel lists of texts and string labels (plus optional extra columns, e.g. domain)."""

    texts: list[str]
    labels: list[str]
    extra: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices: list[int]) -> Split:
        return Split(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            {k: [v[i] for i in indices] for k, v in self.extra.items()},
        )

    def label_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))


def stratified_split(
    split: Split, fractions: dict[str, float], seed: int, source: str = "the dataset"
) -> dict[str, Split]:
    """Carve each named fraction out of `split` class by class; the remainder is "train".

    Every class lands in every carved split (at least one row each), so macro metrics are
    defined on validation and test; a class too small for that is an error, not a silent drop.
    """
    wanted = {name: frac for name, frac in fractions.items() if frac > 0}
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(split.labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    out: dict[str, list[int]] = {name: [] for name in ["train", *wanted]}
    for label in sorted(by_label):
        idx = by_label[label]
        if len(idx) < len(wanted) + 1:
            raise DataError(
                f"label {label!r} in {source} has {len(idx)} row(s); a stratified "
                f"train/{'/'.join(wanted)} split needs at least {len(wanted) + 1}. "
                "Add examples of it, merge it into another label, or drop it."
            )
        rng.shuffle(idx)
        start = 0
        for name, frac in wanted.items():
            # round() keeps the split sizes close to the fractions; max(1, ...) keeps every class present.
            n = max(1, round(frac * len(idx)))
            out[name].extend(idx[start : start + n])
            start += n
        if start >= len(idx):
            raise DataError(f"label {label!r} in {source} leaves no training rows after the split")
        out["train"].extend(idx[start:])
    return {name: split.select(sorted(indices)) for name, indices in out.items()}
