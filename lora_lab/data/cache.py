"""On-disk cache of tokenized splits, so a sweep tokenizes each dataset once, not once per job.

The key is a hash of everything that determines the token ids: the source's identity (class,
settings, file sizes and mtimes), the tokenizer (class, vocabulary, special tokens) and the
max length. A stale entry cannot be hit; a corrupt or half-written one cannot exist (atomic rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

CACHE_VERSION = 1  # bump when the cached layout or the loading pipeline changes


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    specials = json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str)
    return hashlib.sha256(f"{type(tokenizer).__name__}|{specials}|{vocab}".encode()).hexdigest()


def cache_key(source_identity: dict, tokenizer: PreTrainedTokenizerBase, max_length: int) -> str:
    payload = {"v": CACHE_VERSION, "source": source_identity, "tokenizer": tokenizer_identity(tokenizer), "max_length": max_length}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def load(cache_dir: Path, key: str) -> dict[str, Any] | None:
    path = cache_dir / f"{key}.pt"
    # weights_only: the entry holds only lists, dicts, strings and numbers; never unpickle code.
    return torch.load(path, weights_only=True) if path.is_file() else None


def save(cache_dir: Path, key: str, entry: dict[str, Any]) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(entry, tmp)
        os.replace(tmp, cache_dir / f"{key}.pt")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
