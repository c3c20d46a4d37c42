"""Atomic writes: a crash leaves either the old state or the new one, never half a file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    """Write text to a temp file beside `path`, fsync it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (see write_text)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp dir beside `path`; on success rename it to `path`, on error delete it.

    Refuses to replace an existing `path`: artifacts of a finished job are never overwritten.
    """
    if path.exists():
        raise FileExistsError(f"{path} exists already; lora_lab never overwrites a job's artifacts")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def dir_bytes(path: Path) -> int:
    """Total size of the files under `path` (0 if it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


# Weight formats read with pickle, which can run code: lora_lab writes safetensors and reads nothing else.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def pickled_weights(root: Path) -> list[Path]:
    """Files in a pickle format under root's merged/ and adapter/ (the weights a job ships), sorted."""
    return sorted(p for name in ("merged", "adapter") for p in (root / name).rglob("*") if p.suffix in PICKLE_SUFFIXES)


def modified_at(path: Path) -> str:
    """A file's modification time as an ISO 8601 UTC timestamp to the second
    (a job's metrics.json: when it finished)."""
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: Path) -> str:
    """A file's sha256, read in 1 MiB blocks (the MiniLM weights, 87 MiB, take about 0.2 s)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
