"""The CSV, JSONL and Parquet loaders on hypothesis-generated files: odd encodings, ragged rows, huge
fields, empty files, NUL bytes, labels that are numbers, floats or empty. Each file yields splits or
a DataError naming the file; nothing else escapes (no csv.Error, KeyError, ArrowInvalid, ...)."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lora_lab.data.files import TableFile
from lora_lab.errors import DataError

EXAMPLES = 150  # per loader; the closing note of issue 16 quotes these counts
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Cells: ordinary words, odd characters (NUL, quotes, separators, newlines, non-Latin), huge ones.
words = st.sampled_from(["great product", "refund please", "login fails", "ok", "", " ", "a,b", 'say "hi"'])
odd = st.text(alphabet=st.sampled_from(["\x00", '"', ",", "\n", "\r", "\t", "é", "€", "中", "\ufeff", "x", " "]), max_size=12)
huge = st.integers(131_000, 140_000).map(lambda n: "x" * n)  # past the csv module's default field limit
cells = st.one_of(words, odd, huge, st.integers(-3, 3).map(str), st.floats(allow_nan=True).map(str))
labels = st.one_of(st.sampled_from(["pos", "neg", "", " ", "1", "0", "1.0", "-2"]), odd)
# A loadable core (two labels, 10+ rows each, so a stratified split works) and odd rows mixed in.
texts = st.text(alphabet=st.sampled_from("abcdef xyz,é中\"\n"), min_size=1, max_size=30).filter(str.strip)
core = st.lists(st.tuples(texts, st.sampled_from(["pos", "neg"])).map(list), min_size=24, max_size=40).filter(
    lambda rows: min(sum(r[1] == y for r in rows) for y in ("pos", "neg")) >= 10)
rows_of = st.one_of(st.tuples(cells, st.sampled_from(["pos", "neg", "", None])).map(lambda r: [r[0], r[1] or ""]),
                    st.tuples(cells, labels).map(list), st.lists(st.one_of(cells, labels), max_size=4))
mixed_rows = st.tuples(core, st.lists(rows_of, max_size=8)).map(lambda parts: parts[0] + parts[1])
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])


def _load(path: Path, fmt: str) -> None:
    try:
        # max_invalid_fraction=0.5: bad rows are dropped and counted (the repair path) more often than refused
        splits = TableFile(str(path), fmt, name="fuzz", val_fraction=0.2, test_fraction=0.2, max_invalid_fraction=0.5).load()
    except DataError as err:
        assert str(path) in str(err) or "fuzz" in str(err), err  # names the file (or the dataset it is)
        event("DataError: " + str(err).replace(str(path), "<file>")[:60])
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
    quoted=st.booleans(), encoding=encodings, trailing=st.sampled_from(["", "\n", "\r\n", "\x00"]),
)
def test_csv_files_load_or_raise_a_data_error(header, rows, quoted, encoding, trailing):
    if quoted:  # well-formed CSV of odd values
        out = io.StringIO()
        import csv
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


json_values = st.one_of(cells, labels, st.integers(), st.floats(allow_nan=False), st.none(), st.booleans(),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.sampled_from(["a"]), st.integers(), max_size=1))
json_rows = st.one_of(
    st.dictionaries(st.sampled_from(["text", "label", "other"]), json_values, max_size=3).map(json.dumps),
    st.fixed_dictionaries({"text": cells, "label": labels}).map(json.dumps),
    st.fixed_dictionaries({"text": words, "label": st.sampled_from(["pos", "neg", 1, 2.5])}).map(json.dumps),
    json_values.map(json.dumps),  # a JSON line that is not an object
    odd,  # not JSON at all
)


@FUZZ
@given(lines=st.one_of(st.tuples(core.map(lambda rows: [json.dumps({"text": t, "label": y}) for t, y in rows]),
                                  st.lists(json_rows, max_size=6)).map(lambda parts: parts[0] + parts[1]),
                        st.lists(json_rows, max_size=20)),
       encoding=encodings, blank=st.booleans())
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
