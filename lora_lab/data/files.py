"""The user's own CSV / JSON-lines / Parquet exports (from a CRM, a ticketing tool, ...)."""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path

from lora_lab.data.sources import DataReport, Source
from lora_lab.data.splits import Split
from lora_lab.errors import DataError

FORMATS = ("csv", "jsonl", "parquet")
MAX_FIELD_CHARS = 10_000_000  # a CSV field beyond this is no text to classify (see _csv_rows)
# A file named on a command line (eval's data_file=): its format from its suffix.
FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
# Values of a split column that mean each split; anything else is an error, not a guess.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
    "eval": "test",
}


class TableFile(Source):
    """Rows with a text and a label column; optionally a split column, or a separate test file."""

    def __init__(
        self,
        path: str,
        format: str = "csv",
        text_column: str = "text",
        label_column: str = "label",
        split_column: str | None = None,
        test_path: str | None = None,
        encoding: str = "utf-8",
        extra_columns: list[str] | None = None,
        **split_args,
    ):
        super().__init__(**split_args)
        if format not in FORMATS:
            raise DataError(f"dataset.format={format!r}: choose one of {FORMATS}")
        self.path, self.format, self.encoding = Path(path).expanduser(), format, encoding
        self.text_column, self.label_column, self.split_column = text_column, label_column, split_column
        self.test_path = Path(test_path).expanduser() if test_path else None
        # Columns kept beside text and label (e.g. a domain, for dataset.subset), as Split.extra.
        self.extra_columns = list(extra_columns or [])

    def files(self) -> list[Path]:
        return [p for p in (self.path, self.test_path) if p is not None]

    def read(self) -> dict[str, Split]:
        rows = self._rows(self.path, "dataset.path")
        if self.split_column is None:
            splits = {"train": self._split(rows, self.path)}
        else:
            splits = self._by_split_column(rows)
        if self.test_path is not None:
            if "test" in splits:
                raise DataError(f"{self.path} has test rows (split column) and dataset.test_path is set too; use one")
            splits["test"] = self._split(self._rows(self.test_path, "dataset.test_path"), self.test_path)
        return splits

    def _split(self, rows: list[dict], path: Path) -> Split:
        # JSON lines may each have their own keys: a column is there if some row has it, and a row
        # without it has no value there (an empty text or a missing label, dropped and counted).
        columns = list(dict.fromkeys(k for r in rows for k in r if isinstance(k, str)))
        wanted = [("text_column", self.text_column), ("label_column", self.label_column)]
        for key, column in wanted + [("extra_columns", c) for c in self.extra_columns]:
            if column not in columns:
                raise DataError(f"{path}: no column {column!r} (dataset.{key}); columns found: {columns}")
        texts = ["" if r.get(self.text_column) is None else str(r[self.text_column]) for r in rows]
        labels = [None if r.get(self.label_column) in (None, "") else str(r[self.label_column]).strip() for r in rows]
        return Split(texts, labels, {c: [r.get(c) for r in rows] for c in self.extra_columns})

    def _by_split_column(self, rows: list[dict]) -> dict[str, Split]:
        if rows and self.split_column not in rows[0]:
            raise DataError(
                f"{self.path}: no column {self.split_column!r} (dataset.split_column); columns found: {list(rows[0])}"
            )
        groups: dict[str, list[dict]] = {}
        for i, row in enumerate(rows):
            value = str(row[self.split_column]).strip().lower()
            if value not in SPLIT_NAMES:
                raise DataError(
                    f"{self.path}: row {i + 1} has {self.split_column}={row[self.split_column]!r}; "
                    f"use one of {sorted(SPLIT_NAMES)}"
                )
            groups.setdefault(SPLIT_NAMES[value], []).append(row)
        if "train" not in groups:
            raise DataError(f"{self.path}: no training rows in split column {self.split_column!r}")
        return {name: self._split(group, self.path) for name, group in groups.items()}

    def _rows(self, path: Path, key: str) -> list[dict]:
        if not path.is_file():
            raise DataError(
                f"{key}={path}: no such file (resolved to {path.resolve()}); "
                "give an absolute path or one relative to the directory you run from"
            )
        if self.format == "parquet":
            return _parquet_rows(path)
        text = _decode(path, self.encoding)
        return _csv_rows(text, path) if self.format == "csv" else _jsonl_rows(text, path)


def _parquet_rows(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise DataError(
            f"{path}: not a readable Parquet file ({type(err).__name__}: {err}); re-export it, "
            "or set dataset.format to the file's real format (csv, jsonl)"
        ) from err


def _csv_rows(text: str, path: Path) -> list[dict]:
    """Rows of a CSV text. A field may hold up to MAX_FIELD_CHARS characters (the csv module's own limit,
    131,072, refuses long documents); a malformed line is a DataError naming it."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, MAX_FIELD_CHARS))
    try:
        return list(reader)
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({err}); fix or re-export the file") from err
    finally:
        csv.field_size_limit(limit)


def _jsonl_rows(text: str, path: Path) -> list[dict]:
    """One JSON object per non-blank line."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {lineno} is not valid JSON ({err.msg})") from err
        if not isinstance(row, dict):
            raise DataError(
                f"{path}: line {lineno} is a JSON {type(row).__name__}, not an object: "
                'each line must be one row, e.g. {"text": "...", "label": "..."}'
            )
        rows.append(row)
    return rows


def _decode(path: Path, encoding: str) -> str:
    """Decode with the declared encoding; on failure name the file, the line and the setting."""
    raw = path.read_bytes()
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        # A byte-order mark declares the encoding (Excel writes UTF-16 with one, and UTF-8 with one).
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"
        elif raw.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} (byte {err.start}) is not valid {encoding}: {raw[err.start : err.start + 4]!r}. "
            "Set dataset.encoding to the file's encoding (e.g. latin-1 or cp1252) or re-export it as UTF-8."
        ) from err


class LabelledFile(TableFile):
    """Every row of a labelled CSV/JSONL/Parquet file as the one split to evaluate, repaired like any
    Source's rows (empty texts and missing labels dropped and counted). A label the model does not
    know is an error, never a dropped row."""

    def __init__(self, path: Path, known_labels: list[str], text_column: str, label_column: str):
        fmt = FILE_FORMATS[Path(path).suffix.lower()]
        super().__init__(str(path), fmt, text_column, label_column, name=Path(path).name, max_invalid_fraction=1.0)
        self.known_labels = list(known_labels)

    def load(self) -> dict[str, Split]:
        self.report = DataReport()
        try:
            rows = self._repair(self.read()["train"], "rows")
        except DataError as err:  # TableFile names its settings dataset.<key>; here they are the eval's own keys
            raise DataError(str(err).replace("(dataset.", "(")) from err
        unknown = sorted(set(rows.labels) - set(self.known_labels))
        if unknown:
            raise DataError(
                f"{self.path}: label(s) {unknown} in column {self.label_column!r} are not labels of this model, "
                f"which knows {self.known_labels}. Rename them to the model's labels or drop those rows."
            )
        if not len(rows):
            raise DataError(
                f"{self.path}: no row with both a text ({self.text_column!r}) "
                f"and a label ({self.label_column!r}) to evaluate"
            )
        return {"test": rows}
