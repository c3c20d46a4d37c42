"""How a text longer than max_length becomes max_length tokens: one rule for training, evaluation,
the Predictor and the server, so a model reads at serving time what it read in training.

- head: the first tokens (the tokenizer's own truncation).
- tail: the last tokens (a review's verdict, a ticket's request, often sit at the end).
- head_tail: the first `head_tokens` and the last max_length - head_tokens (Sun et al., 2019, "How to
  Fine-Tune BERT for Text Classification?": 128 + 382 of 512 beat head-only and tail-only on IMDb).

`data.max_length=auto` reads the training texts first: the length that covers 95% of them, capped
by the backbone's `max_length` (its position limit, or what it was trained at).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_lab.artifacts import read_json, write_json
from lora_lab.errors import ConfigError

MODES = ("head", "tail", "head_tail")
TRUNCATION_FILE = "truncation.json"  # in merged/: how the model's texts were cut (Predictor reads it)
AUTO = "auto"
AUTO_QUANTILE = 0.95
# head_tail without head_tokens keeps a quarter from the start: Sun et al.'s 128 of 512.
HEAD_SHARE = 0.25


@dataclass(frozen=True)
class Truncation:
    max_length: int
    mode: str = "head"
    head_tokens: int | None = None  # head_tail: tokens kept from the start (null: a quarter)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"data.truncation={self.mode!r}: choose one of {', '.join(MODES)}")
        if self.head_tokens is not None and not 0 <= self.head_tokens < self.max_length:
            raise ConfigError(f"data.head_tokens={self.head_tokens}: must lie in [0, max_length={self.max_length})")

    def encode(self, tokenizer: Any, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Token ids, special tokens included, at most max_length per text; and each text's full length."""
        ids = tokenizer(list(texts), verbose=False)["input_ids"]  # untruncated: the real lengths
        lengths = [len(row) for row in ids]
        if any(n > self.max_length for n in lengths):
            prefix, suffix = special_tokens(tokenizer)
            budget = max(0, self.max_length - len(prefix) - len(suffix))
            head = self._head(budget)
            for i, row in enumerate(ids):
                if len(row) > self.max_length:
                    content = row[len(prefix): len(row) - len(suffix)]
                    ids[i] = prefix + content[:head] + content[len(content) - (budget - head):] + suffix
        return ids, lengths

    def _head(self, budget: int) -> int:
        """Of a long text's `budget` content tokens, how many come from its start (the rest from its end)."""
        if self.mode == "head":
            return budget
        if self.mode == "tail":
            return 0
        return min(budget, self.head_tokens if self.head_tokens is not None else int(HEAD_SHARE * self.max_length))

    def describe(self) -> str:
        """For model cards and logs: what a long text loses."""
        if self.mode == "head":
            return f"the first {self.max_length} tokens"
        if self.mode == "tail":
            return f"the last {self.max_length} tokens"
        head = self.head_tokens if self.head_tokens is not None else int(HEAD_SHARE * self.max_length)
        return f"the first {head} and the last {self.max_length - head} tokens (special tokens included)"

    def as_dict(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "truncation": self.mode, "head_tokens": self.head_tokens}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None, default_max_length: int) -> Truncation:
        """From as_dict()'s form (metrics.json's data/truncation, an export, truncation.json); a
        model saved before truncation modes existed was cut at its head to `default_max_length`."""
        if not record:
            return cls(int(default_max_length))
        return cls(int(record["max_length"]), str(record.get("truncation", "head")), record.get("head_tokens"))

    def save(self, model_dir: Path) -> None:
        write_json(model_dir / TRUNCATION_FILE, self.as_dict())

    @classmethod
    def load(cls, model_dir: Path, default_max_length: int = 512) -> Truncation:
        path = model_dir / TRUNCATION_FILE
        return cls.from_record(read_json(path) if path.is_file() else None, default_max_length)


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own ([CLS] / [SEP]; a decoder's BOS or none)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    start = next(i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain)
    return full[:start], full[start + len(plain):]


def auto_length(train_lengths: Sequence[int], cap: int) -> int:
    """The smallest length that covers AUTO_QUANTILE of the training texts, at most `cap`."""
    ordered = sorted(train_lengths)
    if not ordered:
        return cap
    covered = ordered[max(0, math.ceil(AUTO_QUANTILE * len(ordered)) - 1)]
    return max(1, min(cap, covered))
