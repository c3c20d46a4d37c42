"""The bad-data catalogue: each problem gets a clear error or an explicit, counted repair.

Subprocess: test_data_command_prints_the_json_summary runs `python -m lora_lab.data`, because
that command's printed JSON is what it tests; everything else runs in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from lora_lab.data.files import TableFile
from lora_lab.data.hub import HubDataset
from lora_lab.errors import DataError
from tests.helpers import ticket_rows, write_csv

ROOT = Path(__file__).resolve().parents[2]


def _table(tmp_path: Path, rows: list[dict], **kwargs) -> TableFile:
    return TableFile(
        str(write_csv(tmp_path / "t.csv", rows)), text_column="body", label_column="intent", name="csv", **kwargs
    )


def test_exact_duplicates_are_dropped_before_the_split_and_counted(tmp_path: Path):
    rows = ticket_rows(60) + ticket_rows(60)[:10]  # 10 rows twice
    source = _table(tmp_path, rows)
    splits = source.load()
    assert sum(len(s) for s in splits.values()) == 60
    assert source.report.counts["duplicates"] == 10
    texts = [t for s in splits.values() for t in s.texts]
    assert len(texts) == len(set(texts))  # so nothing leaks across the carved splits


def test_a_text_with_two_labels_is_reported(tmp_path: Path):
    rows = ticket_rows(60)
    rows.append({"body": rows[0]["body"], "intent": "refund"})
    rows += [{"body": f"refund please {i}", "intent": "refund"} for i in range(10)]
    source = _table(tmp_path, rows, leakage="allow")
    source.load()
    assert source.report.counts["conflicting_labels"] == 1


def _with_test_file(tmp_path: Path, test_rows: list[dict], **kwargs) -> TableFile:
    test_path = write_csv(tmp_path / "test.csv", test_rows)
    return _table(tmp_path, ticket_rows(60), test_path=str(test_path), test_fraction=0.0, **kwargs)


def test_train_test_leakage_is_an_error_unless_dropped_or_allowed(tmp_path: Path):
    test_rows = ticket_rows(60)[:5] + [{"body": f"new ticket {i} about login", "intent": "login"} for i in range(10)]
    with pytest.raises(DataError, match="5 test text.*also appear in train.*dataset.leakage=drop"):
        _with_test_file(tmp_path, test_rows).load()
    dropped = _with_test_file(tmp_path, test_rows, leakage="drop")
    assert len(dropped.load()["test"]) == 10 and dropped.report.counts["leakage"] == 5
    allowed = _with_test_file(tmp_path, test_rows, leakage="allow")
    assert len(allowed.load()["test"]) == 15 and allowed.report.counts["leakage"] == 5


def test_a_test_label_never_seen_in_training_is_an_error(tmp_path: Path):
    test_rows = [{"body": f"where is my parcel {i}", "intent": "shipping"} for i in range(5)]
    with pytest.raises(DataError, match=r"test labels never seen in training: \['shipping'\]"):
        _with_test_file(tmp_path, test_rows).load()


def test_split_column_assigns_rows_and_rejects_unknown_values(tmp_path: Path):
    rows = [dict(r, part="test" if i % 5 == 0 else "train") for i, r in enumerate(ticket_rows(100))]
    source = _table(tmp_path, rows, split_column="part", val_fraction=0.1)
    splits = source.load()
    assert len(splits["test"]) == 20 and len(splits["train"]) + len(splits["validation"]) == 80
    rows[7]["part"] = "holdout"
    with pytest.raises(DataError, match="row 8 has part='holdout'"):
        _table(tmp_path, rows, split_column="part").load()


def test_undecodable_bytes_name_the_file_and_line(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_bytes("text,label\nfine row,a\nanother,b\ncaf\xe9 order,a\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"t.csv: line 4 .*not valid utf-8.*dataset.encoding"):
        TableFile(str(path), name="csv").read()
    assert TableFile(str(path), name="csv", encoding="latin-1").read()["train"].texts[2] == "café order"


def test_parquet_and_jsonl_read_the_same_rows(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = ticket_rows(40)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    read = [
        TableFile(str(tmp_path / f"t.{fmt}"), format=fmt, text_column="body", label_column="intent", name=fmt).read()[
            "train"
        ]
        for fmt in ("parquet", "jsonl")
    ]
    assert read[0].texts == read[1].texts and read[0].labels == read[1].labels
    (tmp_path / "bad.jsonl").write_text('{"body": "x", "intent": "a"}\n{"body": oops}\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        TableFile(str(tmp_path / "bad.jsonl"), format="jsonl", name="jsonl").read()


def test_hub_source_maps_columns_and_class_names(tmp_path: Path):
    """Offline, `datasets.load_dataset` reads a local folder the way it reads a hub id."""
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write_csv(folder / "train.csv", ticket_rows(60))
    write_csv(folder / "test.csv", [{"body": f"fresh {i} billing", "intent": "billing"} for i in range(6)])
    splits = HubDataset(str(folder), text_column="body", label_column="intent", name="hub").load()
    assert len(splits["test"]) == 6 and set(splits["train"].labels) == {"billing", "login"}
    with pytest.raises(DataError, match="no column 'text'.*columns found"):
        HubDataset(str(folder), name="hub").load()


def test_long_texts_are_truncated_and_the_share_reported(tiny_cfg):
    cfg = tiny_cfg("data.max_length=16")
    backbone = instantiate(cfg.backbone)
    dm = instantiate(cfg.data, tokenizer=backbone.tokenizer)
    dm.setup("fit")
    assert max(dm.tokenized["train"].lengths) == 16
    assert 0.5 < dm.truncated["train"] <= 1.0  # sales notes run 8-60 words
    assert any("longer than max_length=16 tokens: each keeps the first 16 tokens" in p for p in dm.problems)
    assert max(dm.full_lengths["train"]) > 16  # the real lengths are kept beside the cut ids


def test_tokenized_splits_come_from_the_cache_on_the_second_job(tiny_cfg, tmp_path: Path, monkeypatch):
    cfg = tiny_cfg(f"data.cache_dir={tmp_path / 'cache'}")
    backbone = instantiate(cfg.backbone)
    first = instantiate(cfg.data, tokenizer=backbone.tokenizer)
    first.setup("fit")
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1

    def no_reading(self):
        raise AssertionError("the cache should have served this job")

    second = instantiate(cfg.data, tokenizer=backbone.tokenizer)
    monkeypatch.setattr(type(second.source), "read", no_reading)
    second.setup("fit")
    assert second.tokenized["train"].input_ids == first.tokenized["train"].input_ids
    assert second.labels == first.labels
    # Another max_length is another entry, not a stale hit.
    monkeypatch.undo()
    third = instantiate(cfg.data, tokenizer=backbone.tokenizer, max_length=8)
    third.setup("fit")
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_splits_with_non_json_extra_values_run_uncached_with_a_warning(tiny_cfg, tmp_path: Path, monkeypatch, caplog):
    import numpy as np

    cfg = tiny_cfg(f"data.cache_dir={tmp_path / 'cache'}")
    backbone = instantiate(cfg.backbone)
    dm = instantiate(cfg.data, tokenizer=backbone.tokenizer)
    read = type(dm.source).read

    def with_numpy_column(self):
        splits = read(self)
        for split in splits.values():
            split.extra["score"] = [np.int64(1)] * len(split.texts)
        return splits

    monkeypatch.setattr(type(dm.source), "read", with_numpy_column)
    dm.setup("fit")
    assert len(dm.tokenized["train"]) > 0
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written either
    assert "not cached" in caplog.text and "JSON values" in caplog.text


def test_the_cache_key_follows_the_file(tmp_path: Path):
    from lora_lab.data.cache import cache_key
    from lora_lab.models.backbones import synthetic_bpe_tokenizer

    path = write_csv(tmp_path / "t.csv", ticket_rows(30))
    tok = synthetic_bpe_tokenizer(512)
    before = cache_key(TableFile(str(path), name="csv").identity(), tok, 64)
    write_csv(path, ticket_rows(31))
    assert cache_key(TableFile(str(path), name="csv").identity(), tok, 64) != before


def test_data_command_prints_the_json_summary(tmp_path: Path):
    path = write_csv(tmp_path / "t.csv", ticket_rows(80) + ticket_rows(80)[:3])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lora_lab.data",
            "dataset=csv",
            f"dataset.path={path}",
            "dataset.text_column=body",
            "dataset.label_column=intent",
            "backbone=tiny_bert",
            "format=json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert sum(summary["splits"].values()) == 80 and summary["num_labels"] == 2
    assert summary["label_counts"]["test"] == {"billing": 6, "login": 6}
    assert any("3 exact duplicate" in p for p in summary["problems"])
    assert not (tmp_path / "outputs").exists()  # inspecting writes nothing
