"""Public dataset loaders, checked against the counts documented in ../shared/data/README.md."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import hydra
import pytest
from hydra.core.global_hydra import GlobalHydra

from lora_lab.config.validation import validate
from lora_lab.data.public import Banking77, FinancialPhraseBank, MultiDomainSentiment
from lora_lab.data.splits import Split
from lora_lab.errors import DataError
from tests.helpers import compose_train

# Each source is read once per module: the files are read-only, the Sources do not cache.


@pytest.fixture(scope="module")
def banking77(shared_data_dir: Path) -> dict[str, Split]:
    return Banking77(str(shared_data_dir)).read()


@pytest.fixture(scope="module")
def reviews(shared_data_dir: Path) -> Split:
    return MultiDomainSentiment(str(shared_data_dir)).read()["train"]


def test_banking77_has_the_official_split_and_77_intents(banking77, shared_data_dir):
    assert set(banking77) == {"train", "test"}
    assert (len(banking77["train"]), len(banking77["test"])) == (10_003, 3_080)
    intents = set(json.loads((shared_data_dir / "banking77" / "categories.json").read_text()))
    assert len(intents) == 77
    assert set(banking77["train"].labels) == set(banking77["test"].labels) == intents
    assert all(t and t == t.strip() for split in banking77.values() for t in split.texts)
    # README: 6 test texts equal a train text up to case and outer spaces (outer spaces are stripped).
    assert len(set(banking77["train"].texts) & set(banking77["test"].texts)) == 6


def test_banking77_load_keeps_the_test_split_and_carves_a_stratified_validation(shared_data_dir):
    with pytest.raises(DataError, match="6 test text.*also appear in train/validation.*dataset.leakage"):
        Banking77(str(shared_data_dir), val_fraction=0.1, test_fraction=0.0).load()
    source = Banking77(str(shared_data_dir), val_fraction=0.1, test_fraction=0.0, leakage="allow")
    splits = source.load()
    assert len(splits["test"]) == 3_080  # the official test split stays as published
    assert source.report.counts["leakage"] == 6
    # 4 train texts repeat another train text once stripped: dropped (and counted) before the split
    assert source.report.counts["duplicates"] == 4
    assert len(splits["train"]) + len(splits["validation"]) == 10_003 - 4
    assert 0.09 < len(splits["validation"]) / 10_003 < 0.11
    assert len(set(splits["validation"].labels)) == len(set(splits["train"].labels)) == 77


def test_financial_phrasebank_all_agree_counts(shared_data_dir):
    split = FinancialPhraseBank(str(shared_data_dir)).read()["train"]
    assert len(split) == 2_264
    assert Counter(split.labels) == {"positive": 570, "neutral": 1_391, "negative": 303}
    assert len(set(split.texts)) == 2_259  # the README's 5 duplicate lines


def test_financial_phrasebank_50_agree_decodes_latin1(shared_data_dir):
    every = FinancialPhraseBank(str(shared_data_dir), agreement="50").read()["train"]
    assert len(every) == 4_846
    assert not any("\ufffd" in t for t in every.texts)
    assert any("£" in t for t in every.texts)
    # 50% agreement is a superset of 100%: the same sentences, decoded from a Latin-1 and a
    # UTF-8 file, must come out identical, non-ASCII letters included.
    unanimous = FinancialPhraseBank(str(shared_data_dir), agreement="all").read()["train"]
    assert set(unanimous.texts) <= set(every.texts)


def test_financial_phrasebank_names_file_and_line_of_a_bad_byte(tmp_path):
    folder = tmp_path / "financial_phrasebank"
    folder.mkdir()
    (folder / "Sentences_AllAgree.txt").write_bytes(b"Sales rose .@positive\nSepp\xe4l\xe4 fell .@negative\n")
    with pytest.raises(DataError, match=r"Sentences_AllAgree\.txt, line 2.*utf-8"):
        FinancialPhraseBank(str(tmp_path)).read()


def test_financial_phrasebank_rejects_an_unknown_agreement(tmp_path):
    with pytest.raises(DataError, match=r"agreement='90'.*'all', '75', '66', '50'"):
        FinancialPhraseBank(str(tmp_path), agreement="90")


def test_multi_domain_sentiment_counts(reviews):
    assert len(reviews) == 8_000
    assert Counter(reviews.extra["domain"]) == {d: 2_000 for d in MultiDomainSentiment.DOMAINS}
    assert Counter(zip(reviews.extra["domain"], reviews.labels)) == {
        (d, y): 1_000 for d in MultiDomainSentiment.DOMAINS for y in ("positive", "negative")
    }
    # Parsed, not dumped: no empty texts, no leftover record markup or entities.
    assert all(reviews.texts)
    assert not any("<review" in t or "&quot;" in t or "&amp;" in t for t in reviews.texts)


def test_multi_domain_sentiment_texts_without_titles_match_the_readme(shared_data_dir):
    split = MultiDomainSentiment(str(shared_data_dir), use_title=False).read()["train"]
    assert len(set(split.texts)) == 7_853  # README: distinct review texts


def test_multi_domain_sentiment_one_domain(shared_data_dir):
    split = MultiDomainSentiment(str(shared_data_dir), domain="kitchen").read()["train"]
    assert len(split) == 2_000
    assert set(split.extra["domain"]) == {"kitchen"}
    assert Counter(split.labels) == {"positive": 1_000, "negative": 1_000}


def test_multi_domain_sentiment_rejects_an_unknown_domain(tmp_path):
    with pytest.raises(DataError, match=r"domain='music'.*'kitchen', 'all'"):
        MultiDomainSentiment(str(tmp_path), domain="music")


def test_load_carves_stratified_validation_and_test_keeping_the_domain(shared_data_dir):
    source = MultiDomainSentiment(str(shared_data_dir), val_fraction=0.1, test_fraction=0.15)
    splits = source.load()
    # 146 reviews repeat another (title + text, same label) across products: dropped, counted.
    assert source.report.counts["duplicates"] == 146
    assert sum(len(v) for v in splits.values()) == 8_000 - 146
    assert 0.09 < len(splits["validation"]) / 7_854 < 0.11 and 0.14 < len(splits["test"]) / 7_854 < 0.16
    for split in splits.values():
        counts = Counter(split.labels)
        assert abs(counts["positive"] - counts["negative"]) <= 0.02 * len(split)
        assert len(split.extra["domain"]) == len(split)


@pytest.mark.parametrize(
    ("source", "first_file"),
    [
        (Banking77, "banking77/train.csv"),
        (FinancialPhraseBank, "financial_phrasebank/Sentences_AllAgree.txt"),
        (MultiDomainSentiment, "multi_domain_sentiment/books/positive.review"),
    ],
)
def test_a_missing_data_dir_says_where_it_looked_and_how_to_set_it(tmp_path, source, first_file):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="LORA_LAB_DATA_DIR") as err:
        source(str(missing)).load()
    assert f"no {first_file} under {missing}" in str(err.value)
    assert "paths.data_dir=" in str(err.value)


@pytest.mark.parametrize(
    ("dataset", "sizes"),
    [
        ("banking77", {"validation": (950, 1_050), "test": (3_080, 3_080)}),
        ("financial_phrasebank", {"validation": (220, 235), "test": (335, 345)}),
        ("multi_domain_sentiment", {"validation": (780, 790), "test": (1_170, 1_185)}),
    ],
)
def test_dataset_config_composes_and_loads(tmp_path, shared_data_dir, dataset, sizes):
    try:
        cfg = compose_train(tmp_path, [f"dataset={dataset}", f"paths.data_dir={shared_data_dir}"])
        validate(cfg)
        splits = hydra.utils.instantiate(cfg.dataset).load()
    finally:
        GlobalHydra.instance().clear()
    assert cfg.dataset.name == dataset
    for name, (low, high) in sizes.items():
        assert low <= len(splits[name]) <= high, (name, len(splits[name]))
    assert set(splits["validation"].labels) == set(splits["test"].labels) == set(splits["train"].labels)


def test_the_cache_key_covers_each_dataset_s_files(shared_data_dir):
    """A replaced data file must be a new cache entry: identity() stamps every file read."""
    for source, expected in (
        (Banking77(str(shared_data_dir)), ["banking77/train.csv", "banking77/test.csv"]),
        (FinancialPhraseBank(str(shared_data_dir), agreement="50"), ["financial_phrasebank/Sentences_50Agree.txt"]),
        (
            MultiDomainSentiment(str(shared_data_dir), domain="dvd"),
            ["multi_domain_sentiment/dvd/positive.review", "multi_domain_sentiment/dvd/negative.review"],
        ),
    ):
        stamped = {path for path, _, _ in source.identity()["files"]}
        assert {str(shared_data_dir / rel) for rel in expected} <= stamped
