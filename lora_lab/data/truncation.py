"""How a text longer than max_length becomes max_length tokens: one rule for training, evaluation,
the Predictor and the server, so a model reads at serving time what it read in training.

- head: the first tokens (the tokenizer's own truncation).
- tail: the last tokens (a review's verdict, a ticket's request, often sit at the end).
- head_tail: the first `head_tokens` and the last max_length - head_tokens (Sun et al., 2019, "How to
  Fine-Tune BERT for Text Classification?": 128 + 382 of 512 beat head-only and tail-only on IMDb).

`data.long_text=chunk` reads all of a long text instead: overlapping windows of max_length tokens,
each a full sequence with its own special tokens, whose logits the model averages (in training,
evaluation, the Predictor and the server alike; batching.average_windows). For a linear head on a
pooled embedding that is the head applied to the windows' mean embedding, so the embedding regimes
average embeddings. A text needs 1 + ceil((n - w) / stride) windows, w = max_length minus the special
tokens and stride = 3/4 w (a quarter of each window overlaps the next, so no sentence is read only
cut in two); at most `max_chunks` of them, spread evenly from its first token to its last.

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
from lora_lab.errors import ConfigError, check_positive_int

MODES = ("head", "tail", "head_tail")
LONG_TEXT = ("truncate", "chunk")
CHUNK_OVERLAP = 0.25  # of a window, shared with the next one
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
    long_text: str = "truncate"  # or chunk: every window of the text, logits averaged
    max_chunks: int = 4  # chunk: windows per text at most

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"data.truncation={self.mode!r}: choose one of {', '.join(MODES)}")
        if self.head_tokens is not None and not 0 <= self.head_tokens < self.max_length:
            raise ConfigError(f"data.head_tokens={self.head_tokens}: must lie in [0, max_length={self.max_length})")
        if self.long_text not in LONG_TEXT:
            raise ConfigError(f"data.long_text={self.long_text!r}: choose one of {', '.join(LONG_TEXT)}")
        check_positive_int("data.max_chunks", self.max_chunks, "windows per text", "e.g. 4")

    @property
    def chunked(self) -> bool:
        """Whether encode() gives each text a list of windows (data.long_text=chunk)."""
        return self.long_text == "chunk"

    def encode(self, tokenizer: Any, texts: Sequence[str]) -> tuple[list, list[int]]:
        """Token ids, special tokens included, at most max_length per row; and each text's full length.

        truncate: one row of ids per text. chunk: per text, a list of 1 to max_chunks windows."""
        ids = tokenizer(list(texts), verbose=False)["input_ids"]  # untruncated: the real lengths
        return self.cut(tokenizer, ids), [len(row) for row in ids]

    def cut(self, tokenizer: Any, ids: list[list[int]]) -> list:
        """Untruncated token-id rows (the tokenizer's, special tokens included) as encode() returns them."""
        if not self.chunked and all(len(row) <= self.max_length for row in ids):
            return ids
        prefix, suffix = special_tokens(tokenizer)
        if self.chunked:
            return [self._windows(row, prefix, suffix) for row in ids]
        budget = max(0, self.max_length - len(prefix) - len(suffix))
        head = self._head(budget)
        out = []
        for row in ids:
            content = row[len(prefix) : len(row) - len(suffix)]
            long = len(row) > self.max_length
            out.append(prefix + content[:head] + content[len(content) - (budget - head) :] + suffix if long else row)
        return out

    def _windows(self, row: list[int], prefix: list[int], suffix: list[int]) -> list[list[int]]:
        """A tokenized text as overlapping windows of at most max_length ids, each with the special tokens."""
        if len(row) <= self.max_length:
            return [row]
        content = row[len(prefix) : len(row) - len(suffix)]
        width = max(1, self.max_length - len(prefix) - len(suffix))
        stride = max(1, int(width * (1 - CHUNK_OVERLAP)))
        count = min(self.max_chunks, 1 + math.ceil((len(content) - width) / stride))
        last = len(content) - width  # the last window's start: it ends on the text's last token
        # Evenly spread starts from 0 to `last`: the stride itself when every window fits, wider when
        # max_chunks cuts the count (then the windows overlap less, or leave gaps, but span the text).
        starts = [0] if count == 1 else [round(k * last / (count - 1)) for k in range(count)]
        return [prefix + content[s : s + width] + suffix for s in starts]

    def _head(self, budget: int) -> int:
        """Of a long text's `budget` content tokens, how many come from its start (the rest from its end)."""
        if self.mode == "head":
            return budget
        if self.mode == "tail":
            return 0
        return min(budget, self.head_tokens if self.head_tokens is not None else int(HEAD_SHARE * self.max_length))

    def describe(self) -> str:
        """For model cards and logs: what a long text loses."""
        if self.chunked:
            return (
                f"up to {self.max_chunks} overlapping windows of {self.max_length} tokens spread over the text, "
                "their logits averaged"
            )
        if self.mode == "head":
            return f"the first {self.max_length} tokens"
        if self.mode == "tail":
            return f"the last {self.max_length} tokens"
        head = self._head(self.max_length)
        return f"the first {head} and the last {self.max_length - head} tokens (special tokens included)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "truncation": self.mode,
            "head_tokens": self.head_tokens,
            "long_text": self.long_text,
            "max_chunks": self.max_chunks,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None, default_max_length: int) -> Truncation:
        """From as_dict()'s form (metrics.json's data/truncation, an export, truncation.json); a
        model saved before truncation modes existed was cut at its head to `default_max_length`."""
        if not record:
            return cls(int(default_max_length))
        return cls(
            int(record["max_length"]),
            str(record.get("truncation", "head")),
            record.get("head_tokens"),
            str(record.get("long_text", "truncate")),
            int(record.get("max_chunks", 4)),
        )

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
    start = next(i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain)
    return full[:start], full[start + len(plain) :]


def auto_length(train_lengths: Sequence[int], cap: int) -> int:
    """The smallest length that covers AUTO_QUANTILE of the training texts, at most `cap`."""
    ordered = sorted(train_lengths)
    if not ordered:
        return cap
    covered = ordered[max(0, math.ceil(AUTO_QUANTILE * len(ordered)) - 1)]
    return max(1, min(cap, covered))
