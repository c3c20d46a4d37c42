"""An export names nothing of the machine that trained it: no job dir, data dir, cache, virtualenv
or home directory, so that its card can be published and its files copied anywhere.

Three kinds of value carry such paths, and each is rewritten where it is written:
- the backbone's weights: the embedded model's resolver (`${embedded_minilm:}`) instead of its
  site-packages dir (bundle.portable_backbone), and the card names its hub id and package;
- the data dir in the dataset node a server rebuilds the training rows from (/v1/similar): the
  default's interpolation, `${oc.env:LORA_LAB_DATA_DIR,data}`, which the serving machine resolves;
- everything else (the card's config, provenance.json's command, overrides and data files,
  lora_lab_export.json): each path under a known root becomes a placeholder, `<data dir>/fpb/x.txt`.

Then `leaks` reads every text file of the export back, and the export is refused (nothing left
at out) if one still holds one of this machine's roots: a new field with a path fails loudly here
rather than shipping a user's directory layout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# What a server's dataset node reads the data dir from (conf/paths/default.yaml's default).
PORTABLE_DATA_DIR = "${oc.env:LORA_LAB_DATA_DIR,data}"
TEXT_SUFFIXES = {".json", ".md", ".txt", ".yaml", ".yml", ".jinja"}
# The base's vocabulary, copied as the tokenizer saved it: a byte-level BPE vocabulary may hold a
# token such as "/root" or "/home", which names no directory of anyone's.
VOCABULARY_FILES = {"tokenizer.json", "vocab.txt", "vocab.json", "merges.txt"}


def machine_roots(
    job_dir: Path, paths: dict[str, Any], provenance: dict[str, Any] | None = None
) -> list[tuple[str, str]]:
    """(absolute root, placeholder), longest first: the job's own dirs as its config names them
    (`paths`: data_dir, cache_dir, output_dir), the dir of its runs (a sweep dir), and this
    machine's Python environment, working dir and home. `provenance` adds the dirs the job itself
    resolved (its `paths`; a job from before them: each data file's dir), which the export's own
    environment may not name (LORA_LAB_DATA_DIR unset, or another machine's)."""
    recorded = (provenance or {}).get("paths") or {}
    files = [] if recorded else [str(Path(f["path"]).parent) for f in (provenance or {}).get("data_files", [])]
    named = [
        (str(job_dir), "<job dir>"),
        (paths.get("output_dir"), "<job dir>"),
        (str(job_dir.parent), "<runs dir>"),
        (paths.get("data_dir"), "<data dir>"),
        (paths.get("cache_dir"), "<cache dir>"),
        (sys.prefix, "<python env>"),
        (os.getcwd(), "<working dir>"),
        (str(Path.home()), "~"),
        (recorded.get("data_dir"), "<data dir>"),
        (recorded.get("cache_dir"), "<cache dir>"),
        (recorded.get("output_dir"), "<job dir>"),
        *((parent, "<data files' dir>") for parent in files),
    ]
    roots: dict[str, str] = {}
    for root, placeholder in named:
        if root and Path(root).is_absolute():
            for form in {os.path.normpath(root), os.path.realpath(root)}:
                if len(Path(form).parts) > 1:  # never "/": it would rewrite every path
                    roots.setdefault(form, placeholder)
    return sorted(roots.items(), key=lambda item: -len(item[0]))


def scrub(value: Any, roots: list[tuple[str, str]]) -> Any:
    """`value` (str, list, dict, nested) with each root replaced by its placeholder."""
    if isinstance(value, str):
        for root, placeholder in roots:
            value = value.replace(root, placeholder)
        return value
    if isinstance(value, dict):
        return {key: scrub(item, roots) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item, roots) for item in value]
    return value


def leaks(export_dir: Path, roots: Iterable[str]) -> list[str]:
    """`file: root` for each text file of the export that still holds one of `roots`."""
    found = []
    for path in sorted(export_dir.rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES or path.name in VOCABULARY_FILES:
            continue
        text = path.read_text(errors="replace")
        found += [f"{path.relative_to(export_dir)}: {root}" for root in roots if root in text]
    return found
