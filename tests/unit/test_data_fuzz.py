"""The CSV, JSONL and Parquet loaders on hypothesis-generated files: odd encodings, ragged rows, huge
fields, empty files, NUL bytes, labels that are numbers, floats or empty.

Three kinds of example per loader:
- anything goes: each file yields splits or a DataError naming the file and one problem of the
  catalogue below; nothing else escapes (no csv.Error, KeyError, ArrowInvalid, ...);
- valid files (a loadable core, well-formed, a declared or BOM-marked encoding, a few repairable
  rows): they must load, and exactly the core's rows come back across the three splits;
- files with one known defect: they must raise a DataError naming that defect (and its line, when
  the format has lines).
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from lora_lab.data.files import TableFile
from lora_lab.errors import DataError

EXAMPLES = 150  # per loader; the closing note of issue 16 quotes these counts
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# Cells: ordinary words, odd characters (NUL, quotes, separators, newlines, non-Latin), huge ones.
words = st.sampled_from(["great product", "refund please", "login fails", "ok", "", " ", "a,b", 'say "hi"'])
odd = st.text(
    alphabet=st.sampled_from(["\x00", '"', ",", "\n", "\r", "\t", "é", "€", "中", "\ufeff", "x", " "]), max_size=12
)
huge = st.integers(131_000, 140_000).map(lambda n: "x" * n)  # past the csv module's default field limit
cells = st.one_of(words, odd, huge, st.integers(-3, 3).map(str), st.floats(allow_nan=True).map(str))
labels = st.one_of(st.sampled_from(["pos", "neg", "", " ", "1", "0", "1.0", "-2"]), odd)
# A loadable core (two labels, 10+ rows each, so a stratified split works) and odd rows mixed in.
texts = st.text(alphabet=st.sampled_from('abcdef xyz,é中"\n'), min_size=1, max_size=30).filter(str.strip)
core = st.lists(st.tuples(texts, st.sampled_from(["pos", "neg"])).map(list), min_size=24, max_size=40).filter(
    lambda rows: min(sum(r[1] == y for r in rows) for y in ("pos", "neg")) >= 10
)
rows_of = st.one_of(
    st.tuples(cells, st.sampled_from(["pos", "neg", "", None])).map(lambda r: [r[0], r[1] or ""]),
    st.tuples(cells, labels).map(list),
    st.lists(st.one_of(cells, labels), max_size=4),
)
mixed_rows = st.tuples(core, st.lists(rows_of, max_size=8)).map(lambda parts: parts[0] + parts[1])
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])
# What the loader reads as UTF-8 (dataset.encoding's default): UTF-8, or a byte-order mark saying otherwise.
readable_encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])
# A valid core: as `core`, texts distinct even up to outer spaces (a repeated text may land in two
# splits, which is leakage: an error by default, not a valid file).
valid_core = st.lists(
    st.tuples(texts, st.sampled_from(["pos", "neg"])).map(list),
    min_size=24,
    max_size=40,
    unique_by=lambda row: row[0].strip(),
).filter(lambda rows: min(sum(r[1] == y for r in rows) for y in ("pos", "neg")) >= 10)
# Rows the loader repairs by dropping them (counted): an empty text or a missing label.
repairable = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["", " ", "\t"]), st.sampled_from(["pos", "neg"])), st.tuples(texts, st.just(""))
    ).map(list),
    max_size=8,
)

# Every problem the loaders name; a DataError must be one of them (a bare "bad file" would not do).
PROBLEMS = {
    "encoding": r"line \d+ \(byte \d+\) is not valid [\w-]+",
    "csv": r"line \d+ is not valid CSV",
    "json": r"line \d+ is not valid JSON",
    "not an object": r"line \d+ is a JSON \w+, not an object",
    "parquet": r"not a readable Parquet file",
    "column": r"no column '\w+' \(dataset\.\w+\)",
    "unlabelled": r"\d+ of \d+ rows have an empty text or a missing label",
    "small class": r"has \d+ row\(s\); a stratified",
    "no training rows": r"leaves no training rows after the split",
    "single label": r"the training split has a single label",
    "unseen label": r"labels never seen in training",
    "leakage": r"also appear in .*\(leakage\)",
}


def _table(path: Path, fmt: str) -> TableFile:
    # max_invalid_fraction=0.5: bad rows are dropped and counted (the repair path) more often than refused
    return TableFile(str(path), fmt, name="fuzz", val_fraction=0.2, test_fraction=0.2, max_invalid_fraction=0.5)


def _problem(err: DataError, path: Path) -> str:
    """The catalogue's name for this error, which must name the file (or the dataset it is)."""
    assert str(path) in str(err) or "fuzz" in str(err), err
    named = [name for name, pattern in PROBLEMS.items() if re.search(pattern, str(err))]
    assert named, f"a DataError that names no known problem: {err}"
    return named[0]


def _load(path: Path, fmt: str) -> None:
    try:
        splits = _table(path, fmt).load()
    except DataError as err:
        event("DataError: " + _problem(err, path))
        return
    event("loaded")
    assert set(splits) == {"train", "validation", "test"}
    for split in splits.values():
        assert len(split.texts) == len(split.labels) and all(isinstance(t, str) and t.strip() for t in split.texts)


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


@FUZZ
@given(
    header=st.sampled_from(["text,label"] * 4 + ["label,text", "text,label,extra", "body,category", ""]),
    rows=st.one_of(mixed_rows, st.lists(rows_of, max_size=20)),
    quoted=st.booleans(),
    encoding=encodings,
    trailing=st.sampled_from(["", "\n", "\r\n", "\x00"]),
)
def test_csv_files_load_or_raise_a_data_error(header, rows, quoted, encoding, trailing):
    if quoted:  # well-formed CSV of odd values
        out = io.StringIO()
        writer = csv.writer(out)
        if header:
            writer.writerow(header.split(","))
        writer.writerows(rows)
        text = out.getvalue()
    else:  # raw lines: ragged, unbalanced quotes, stray separators
        text = "\n".join([header, *(",".join(r) for r in rows)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        path.write_bytes(_encode(text + trailing, encoding))
        _load(path, "csv")


json_values = st.one_of(
    cells,
    labels,
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a"]), st.integers(), max_size=1),
)
json_rows = st.one_of(
    st.dictionaries(st.sampled_from(["text", "label", "other"]), json_values, max_size=3).map(json.dumps),
    st.fixed_dictionaries({"text": cells, "label": labels}).map(json.dumps),
    st.fixed_dictionaries({"text": words, "label": st.sampled_from(["pos", "neg", 1, 2.5])}).map(json.dumps),
    json_values.map(json.dumps),  # a JSON line that is not an object
    odd,  # not JSON at all
)


@FUZZ
@given(
    lines=st.one_of(
        st.tuples(
            core.map(lambda rows: [json.dumps({"text": t, "label": y}) for t, y in rows]),
            st.lists(json_rows, max_size=6),
        ).map(lambda parts: parts[0] + parts[1]),
        st.lists(json_rows, max_size=20),
    ),
    encoding=encodings,
    blank=st.booleans(),
)
def test_jsonl_files_load_or_raise_a_data_error(lines, encoding, blank):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_bytes(_encode(("\n\n" if blank else "\n").join(lines), encoding))
        _load(path, "jsonl")


column_values = st.one_of(
    st.lists(st.one_of(cells, st.none()), min_size=0, max_size=25),
    st.lists(st.one_of(st.integers(-5, 5), st.none()), max_size=25),
    st.lists(st.floats(allow_nan=True), max_size=25),
)


@FUZZ
@given(
    columns=st.one_of(
        core.map(lambda rows: {"text": [t for t, _ in rows], "label": [y for _, y in rows]}),
        st.dictionaries(st.sampled_from(["text", "label", "other"]), column_values, max_size=3),
    ),
    garbage=st.one_of(st.none(), st.binary(max_size=64), st.just(b"PAR1"), st.just(b"PAR1\x00\x00PAR1")),
)
def test_parquet_files_load_or_raise_a_data_error(columns, garbage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        if garbage is not None:
            path.write_bytes(garbage)
        else:
            n = min((len(v) for v in columns.values()), default=0)
            pq.write_table(pa.table({k: v[:n] for k, v in columns.items()}) if columns else pa.table({}), path)
        _load(path, "parquet")


# ---------------------------------------------------------------------------------------------
# Valid files load, with exactly their rows; files with one known defect raise that defect.
# ---------------------------------------------------------------------------------------------


def _csv_text(rows: list[list[str]], header: tuple[str, str] = ("text", "label")) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _jsonl_text(rows: list[list[str]], keys: tuple[str, str] = ("text", "label")) -> str:
    return "\n".join(json.dumps(dict(zip(keys, row)), ensure_ascii=False) for row in rows)  # é as é, not \u00e9


def _write(tmp: str, fmt: str, content: bytes | dict) -> Path:
    path = Path(tmp) / f"rows.{fmt}"
    if isinstance(content, dict):
        pq.write_table(pa.table(content), path)
    else:
        path.write_bytes(content)
    return path


def _assert_loads_exactly(path: Path, fmt: str, core: list[list[str]]) -> None:
    """The file loads, and the rows across train/validation/test are the core's, each once."""
    splits = _table(path, fmt).load()
    got = sorted((t, y) for split in splits.values() for t, y in zip(split.texts, split.labels))
    assert got == sorted(map(tuple, core))
    assert all(len(split) > 0 for split in splits.values())


def _assert_raises(path: Path, fmt: str, problem: str, line: int | None = None) -> None:
    try:
        _table(path, fmt).load()
    except DataError as err:
        assert _problem(err, path) == problem, err
        if line is not None:
            assert f"line {line} " in str(err), err
    else:
        raise AssertionError(f"{path.name} has a {problem} problem but loaded")


@FUZZ
@given(
    core=valid_core,
    noise=repairable,
    encoding=readable_encodings,
    fmt=st.sampled_from(["csv", "jsonl"]),
    where=st.randoms(use_true_random=False),
)
def test_valid_text_files_load_with_exactly_their_rows(core, noise, encoding, fmt, where):
    rows = core + noise
    where.shuffle(rows)
    text = _csv_text(rows) if fmt == "csv" else _jsonl_text(rows)
    with tempfile.TemporaryDirectory() as tmp:
        _assert_loads_exactly(_write(tmp, fmt, text.encode(encoding)), fmt, core)


@FUZZ
@given(core=valid_core, noise=repairable)
def test_valid_parquet_files_load_with_exactly_their_rows(core, noise):
    rows = core + noise
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, "parquet", {"text": [t for t, _ in rows], "label": [y for _, y in rows]})
        _assert_loads_exactly(path, "parquet", core)


# One defect planted in a valid file, and the problem it must be reported as.
DEFECTS = {
    "renamed columns": "column",
    "not utf-8": "encoding",
    "mostly unlabelled": "unlabelled",
    "one label": "single label",
    "a class of one row": "small class",
}


def _with_defect(core: list[list[str]], defect: str) -> list[list[str]]:
    if defect == "mostly unlabelled":  # more than max_invalid_fraction=0.5 of the rows
        return core + [[f"unlabelled {i}", ""] for i in range(len(core) + 1)]
    if defect == "one label":
        return [[t, "pos"] for t, _ in core]
    if defect == "a class of one row":
        return [*core, ["the only rare one", "rare"]]
    return core


@FUZZ
@given(
    core=valid_core,
    defect=st.sampled_from(sorted(DEFECTS)),
    fmt=st.sampled_from(["csv", "jsonl", "parquet"]),
    encoding=st.sampled_from(["latin-1", "cp1252"]),
)
def test_a_file_with_one_defect_raises_that_problem(core, defect, fmt, encoding):
    rows = _with_defect(core, defect)
    keys = ("body", "category") if defect == "renamed columns" else ("text", "label")
    if defect == "not utf-8":
        assume(fmt != "parquet")  # Parquet has no text encoding
        rows = [*rows, ["café crème", "pos"]]  # é is one byte in latin-1/cp1252, never valid UTF-8
    with tempfile.TemporaryDirectory() as tmp:
        if fmt == "parquet":
            path = _write(tmp, fmt, {keys[0]: [t for t, _ in rows], keys[1]: [y for _, y in rows]})
        else:
            text = _csv_text(rows, keys) if fmt == "csv" else _jsonl_text(rows, keys)
            path = _write(tmp, fmt, _encode(text, encoding if defect == "not utf-8" else "utf-8"))  # 中 -> ? in latin-1
        _assert_raises(path, fmt, DEFECTS[defect])


@FUZZ
@given(
    core=valid_core,
    at=st.integers(0, 40),
    bad=st.sampled_from(
        ["{not json", "text,label", "'single quoted'", '{"text": }', "[1, 2]", '"a string"', "3", "null"]
    ),
)
def test_a_bad_jsonl_line_is_named_by_its_number(core, at, bad):
    lines = _jsonl_text(core).split("\n")
    at = min(at, len(lines))
    lines.insert(at, bad)
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, "jsonl", "\n".join(lines).encode())
        problem = "json" if bad[0] in "{t'" else "not an object"
        _assert_raises(path, "jsonl", problem, line=at + 1)


@FUZZ
@given(garbage=st.one_of(st.binary(max_size=64), st.just(b"PAR1"), st.just(b"PAR1\x00\x00PAR1")))
def test_a_file_that_is_not_parquet_is_named_so(garbage):
    with tempfile.TemporaryDirectory() as tmp:
        _assert_raises(_write(tmp, "parquet", garbage), "parquet", "parquet")
