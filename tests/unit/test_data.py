"""Splits, file sources, batching and the DataModule, on small in-memory data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lora_lab.data.batching import LengthGroupedBatchSampler, PadCollator
from lora_lab.data.datamodule import TextClassificationDataModule
from lora_lab.data.files import TableFile
from lora_lab.data.splits import Split, stratified_split
from lora_lab.data.synthetic.sales_notes import SyntheticSalesNotes
from lora_lab.errors import DataError
from lora_lab.models.backbones import Backbone
from tests.helpers import ticket_rows, write_csv


def _split(counts: dict[str, int]) -> Split:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return Split([f"text {i} {y}" for i, y in enumerate(labels)], labels)


def test_stratified_split_keeps_class_shares_and_partitions_rows():
    split = _split({"a": 100, "b": 40, "c": 10})
    out = stratified_split(split, {"validation": 0.2, "test": 0.1}, seed=0)
    texts = [t for s in out.values() for t in s.texts]
    assert sorted(texts) == sorted(split.texts)  # a partition: nothing lost, nothing twice
    assert Counter(out["validation"].labels) == {"a": 20, "b": 8, "c": 2}
    assert Counter(out["test"].labels) == {"a": 10, "b": 4, "c": 1}
    assert (
        stratified_split(split, {"validation": 0.2}, seed=0)["validation"].texts
        == stratified_split(split, {"validation": 0.2}, seed=0)["validation"].texts
    )
    assert (
        stratified_split(split, {"validation": 0.2}, seed=1)["validation"].texts
        != stratified_split(split, {"validation": 0.2}, seed=0)["validation"].texts
    )


def test_stratified_split_names_a_label_too_small_to_stratify():
    with pytest.raises(DataError, match="label 'rare'.*2 row"):
        stratified_split(_split({"common": 50, "rare": 2}), {"validation": 0.1, "test": 0.1}, seed=0)


def test_synthetic_source_yields_three_disjoint_stratified_splits():
    splits = SyntheticSalesNotes(n_per_class=40, name="b2b_sales_notes").load()
    assert set(splits) == {"train", "validation", "test"}
    assert sum(len(s) for s in splits.values()) == 200
    # Disjoint: no row is in two splits (the 200 rows are 200 distinct texts, each in one split).
    rows = {name: set(zip(split.texts, split.labels)) for name, split in splits.items()}
    assert sum(len(r) for r in rows.values()) == 200
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not rows[a] & rows[b], f"{a} and {b} share rows"
        assert not {t for t, _ in rows[a]} & {t for t, _ in rows[b]}, f"{a} and {b} share texts"
    # Stratified: each class's share of each split is its share of the whole (1/5 each), up to the
    # rounding of each class's count to a whole row: at most one row's share of that split.
    whole = Counter(y for split in splits.values() for y in split.labels)
    for name, split in splits.items():
        counts = Counter(split.labels)
        assert set(counts) == set(whole), name
        for label, n in whole.items():
            assert abs(counts[label] / len(split) - n / 200) <= 1 / len(split), (name, label, counts)
    assert len(splits["validation"]) == len(splits["test"]) == 30  # 15% of each class: 6 rows of 40


def test_csv_and_jsonl_sources_read_the_configured_columns(tmp_path: Path):
    csv_path = write_csv(tmp_path / "t.csv", ticket_rows())
    jsonl_path = tmp_path / "t.jsonl"
    jsonl_path.write_text("\n".join(json.dumps(r) for r in ticket_rows()) + "\n")
    for path, fmt in ((csv_path, "csv"), (jsonl_path, "jsonl")):
        splits = TableFile(str(path), format=fmt, text_column="body", label_column="intent", name=fmt).load()
        assert sum(len(s) for s in splits.values()) == 60
        assert set(splits["train"].labels) == {"billing", "login"}


def test_missing_column_error_lists_the_columns_found(tmp_path: Path):
    path = write_csv(tmp_path / "t.csv", ticket_rows())
    with pytest.raises(DataError, match=r"no column 'text'.*\['body', 'intent'\]"):
        TableFile(str(path), name="csv").load()


def test_missing_file_error_names_the_path(tmp_path: Path):
    with pytest.raises(DataError, match="nope.csv: no such file"):
        TableFile(str(tmp_path / "nope.csv"), name="csv").load()


def test_undecodable_bytes_name_the_encoding_setting(tmp_path: Path):
    path = write_csv(tmp_path / "t.csv", [{"text": "caf\u00e9 order", "label": "x"}] * 5, encoding="latin-1")
    with pytest.raises(DataError, match="not valid utf-8.*dataset.encoding"):
        TableFile(str(path), name="csv").load()


def test_empty_texts_are_dropped_and_counted_or_rejected_when_too_many(tmp_path: Path):
    rows = ticket_rows(100)
    rows[3]["body"] = "   "
    rows[5]["intent"] = ""
    path = write_csv(tmp_path / "t.csv", rows)
    source = TableFile(str(path), text_column="body", label_column="intent", name="csv")
    splits = source.load()
    assert sum(len(s) for s in splits.values()) == 98
    assert source.report.counts == {"empty_or_unlabelled": 2}
    assert "dropped 2 row(s)" in source.report.problems[0]
    for row in rows[:20]:
        row["body"] = ""
    path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(DataError, match="20 of 100 rows have an empty text"):
        TableFile(str(path), text_column="body", label_column="intent", name="csv").load()


def test_a_single_class_is_an_error(tmp_path: Path):
    path = write_csv(tmp_path / "t.csv", [{"text": f"row {i}", "label": "only"} for i in range(20)])
    with pytest.raises(DataError, match="single label"):
        TableFile(str(path), name="csv").load()


def test_length_grouped_batches_cover_every_row_once_with_less_padding():
    lengths = [(i * 37) % 61 + 1 for i in range(1000)]
    grouped = LengthGroupedBatchSampler(lengths, batch_size=32, shuffle=True, seed=0)
    plain = LengthGroupedBatchSampler(lengths, batch_size=32, shuffle=True, seed=0, group=False)

    def padded_tokens(sampler) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in sampler)

    batches = list(grouped)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert padded_tokens(grouped) < 0.75 * padded_tokens(plain)
    grouped.set_epoch(1)
    assert list(grouped) != batches  # a new order each epoch
    grouped.set_epoch(0)
    assert list(grouped) == batches  # and a reproducible one


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("group", [True, False])
def test_ddp_ranks_train_on_disjoint_equal_shares_of_one_epoch_and_evaluate_every_row_once(world: int, group: bool):
    lengths = [(i * 37) % 61 + 1 for i in range(1000)]  # 32 batches of 32: 1 or 2 left over for 3 ranks

    def ranks(shuffle: bool, batch_size: int = 32, epoch: int = 1) -> list[list[list[int]]]:
        samplers = [
            LengthGroupedBatchSampler(lengths, batch_size, shuffle, seed=0, group=group, rank=r, world_size=world)
            for r in range(world)
        ]
        for s in samplers:
            s.set_epoch(epoch)
        assert all(len(list(s)) == len(s) for s in samplers)  # Lightning counts steps with len()
        return [list(s) for s in samplers]

    single = LengthGroupedBatchSampler(lengths, 32, True, seed=0, group=group)
    single.set_epoch(1)
    epoch = list(single)
    shares = ranks(shuffle=True)
    assert len({len(share) for share in shares}) == 1  # equal counts: no rank waits on an all-reduce
    used = [tuple(b) for share in shares for b in share]
    assert len(set(used)) == len(used)  # disjoint: no batch (so no row) twice in the epoch
    assert (
        set(used) <= {tuple(b) for b in epoch} and len(epoch) - len(used) <= world - 1
    )  # the epoch's batches, minus < world
    rows = [i for b in used for i in b]
    assert len(set(rows)) == len(rows)

    # Evaluation: every row on exactly one rank, even a split smaller than one batch.
    for batch_size in (128, 2000):
        shares = ranks(shuffle=False, batch_size=batch_size)
        assert sorted(i for share in shares for b in share for i in b) == list(range(1000))
        assert all(share for share in shares)

    # Resume: a rank skips the first batches of its own share, where the killed job stopped.
    resumed = LengthGroupedBatchSampler(lengths, 32, True, seed=0, group=group, rank=1, world_size=world)
    resumed.set_epoch(1)
    resumed.skip(1, 3)
    assert list(resumed) == ranks(shuffle=True)[1][3:]


@pytest.mark.parametrize("world", [1, 2])
def test_chunked_evaluation_batches_count_windows_and_training_batches_count_texts(world: int):
    # data.long_text=chunk: 1 to 4 windows per text; the longest texts (most windows) sort together.
    windows = [1 + (i * 7) % 4 for i in range(300)]
    windows[5] = 9  # one text with more windows than a batch holds: it goes alone
    lengths = [100 * w for w in windows]
    shares = [
        LengthGroupedBatchSampler(lengths, 8, shuffle=False, rank=r, world_size=world, windows=windows)
        for r in range(world)
    ]
    batches = [b for s in shares for b in s]
    assert all(len(list(s)) == len(s) for s in shares)  # Lightning counts eval batches with len()
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert max(sum(windows[i] for i in b) for b in batches if b != [5]) <= 8 and [5] in batches
    for s in shares:  # full: a batch closed when the next text (1 to 4 windows, or 9) did not fit
        assert min(sum(windows[i] for i in b) for b in list(s)[:-1]) >= 5
    # By texts, the first batch would be 8 texts of 4 windows: 32 sequences in one forward pass.
    by_texts = next(iter(LengthGroupedBatchSampler(lengths, 8, shuffle=False)))
    assert sum(windows[i] for i in by_texts) > 8
    # Training batches keep 8 texts (the optimizer's batch), windows or not.
    train = LengthGroupedBatchSampler(lengths, 8, shuffle=True, seed=0, windows=windows)
    assert list(train) == list(LengthGroupedBatchSampler(lengths, 8, shuffle=True, seed=0))


def test_pad_collator_right_pads_and_masks():
    batch = PadCollator(pad_token_id=0)([([5, 6, 7], 1), ([8], 0)])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_pad_collator_rounds_the_width_up_to_a_multiple_but_not_past_max_width():
    def width(rows: list[list[int]], max_width: int | None = None) -> int:
        return PadCollator(0, pad_to_multiple_of=8, max_width=max_width)([(r, 0) for r in rows])["input_ids"].shape[1]

    assert width([[1] * 3, [1]]) == 8
    assert width([[1] * 8]) == 8
    assert width([[1] * 9]) == 16
    assert width([[1] * 9], max_width=12) == 12  # a model reads at most max_width tokens
    assert width([[1] * 13], max_width=12) == 13  # a longer row keeps its length
    batch = PadCollator(0, pad_to_multiple_of=8)([([5, 6, 7], 1)])
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_phi"])
def test_datamodule_fixes_labels_from_train_and_pads_with_the_tokenizer(backbone: str, tiny_cfg):
    from hydra.utils import instantiate

    cfg = tiny_cfg(f"backbone={backbone}")
    bb: Backbone = instantiate(cfg.backbone)
    dm: TextClassificationDataModule = instantiate(cfg.data, tokenizer=bb.tokenizer)
    dm.setup("fit")
    assert dm.labels == sorted(set(dm.splits["train"].labels))
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == cfg.data.batch_size
    assert batch["input_ids"].shape[1] <= dm.max_length <= cfg.data.max_length_cap  # data.max_length=auto, resolved
    assert bb.tokenizer.pad_token_id is not None
    pads = batch["input_ids"][batch["attention_mask"] == 0]
    assert (pads == bb.tokenizer.pad_token_id).all()


def test_train_rows_keeps_a_seeded_sample_with_every_label_and_whole_eval_splits(tiny_job):
    full, few, again = tiny_job().datamodule, tiny_job("train_rows=12").datamodule, tiny_job("train_rows=12").datamodule
    assert len(few.splits["train"]) == len(few.tokenized["train"]) == 12
    assert set(few.splits["train"].labels) == set(full.splits["train"].labels)  # one of every label first
    assert set(few.splits["train"].texts) <= set(full.splits["train"].texts)
    assert few.splits["train"].texts == again.splits["train"].texts  # seeded
    for split in ("validation", "test"):
        assert few.splits[split].texts == full.splits[split].texts
    # Token ids follow the kept texts.
    i = full.splits["train"].texts.index(few.splits["train"].texts[0])
    assert few.tokenized["train"].input_ids[0] == full.tokenized["train"].input_ids[i]
