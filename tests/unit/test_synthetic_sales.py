"""The synthetic B2B sales-notes generator: deterministic, balanced, varied, noisy on request, not trivial.

Subprocess: one test runs the generator in a second interpreter, because a different
PYTHONHASHSEED (fixed at interpreter start) giving the same rows is what it tests.
"""

from __future__ import annotations

import collections
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lora_lab.data.synthetic import sales_notes
from lora_lab.data.synthetic.sales_notes import LABELS, SyntheticSalesNotes, generate_sales_notes
from lora_lab.data.synthetic.tables import table_path
from tests.helpers import digest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = re.compile(r"[a-z0-9']+")


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


@pytest.fixture(scope="module")
def corpora() -> dict[float, list[dict[str, str]]]:
    """The default-size data set (400 per class, seed 0) at three noise levels, generated once."""
    return {noise: generate_sales_notes(400, seed=0, noise=noise) for noise in (0.0, 0.3, 1.0)}


def test_labels_are_the_five_intents_in_order():
    assert LABELS == ("Repeat Order", "Urgent Need", "Stocking Issue", "Custom Spec", "New Product Demand")


def test_same_arguments_give_identical_rows(corpora):
    assert generate_sales_notes(400, seed=0, noise=0.3) == corpora[0.3]


def test_a_different_seed_gives_different_texts(corpora):
    other = generate_sales_notes(400, seed=1, noise=0.3)
    same_position = sum(a["text"] == b["text"] for a, b in zip(other, corpora[0.3]))
    assert same_position == 0
    assert len({r["text"] for r in other} & {r["text"] for r in corpora[0.3]}) < 20


@pytest.mark.parametrize("hash_seed", ["0", "4242"])
def test_output_is_identical_in_another_process_with_another_hash_seed(corpora, hash_seed: str):
    code = (
        "import hashlib, json\n"
        "from lora_lab.data.synthetic.sales_notes import generate_sales_notes\n"
        "rows = generate_sales_notes(400, seed=0, noise=0.3)\n"
        "print(hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == digest(corpora[0.3])


@pytest.mark.parametrize("n_per_class", [1, 7, 400])
def test_every_class_gets_exactly_n_rows_of_text_and_label(corpora, n_per_class: int):
    rows = corpora[0.3] if n_per_class == 400 else generate_sales_notes(n_per_class, seed=3, noise=0.3)
    assert len(rows) == 5 * n_per_class
    assert all(set(r) == {"text", "label"} and isinstance(r["text"], str) for r in rows)
    counts = collections.Counter(r["label"] for r in rows)
    assert set(counts) == set(LABELS)
    assert all(counts[label] == n_per_class for label in LABELS)


def test_rows_are_shuffled_not_grouped_by_label(corpora):
    labels = [r["label"] for r in corpora[0.3]]
    # Grouped output would have 4 label changes; a shuffle of 2000 rows has about 1600.
    changes = sum(a != b for a, b in zip(labels, labels[1:]))
    assert changes > 1200
    assert len(set(labels[:50])) == 5


def test_noise_changes_the_spelling_not_the_notes_or_their_order(corpora):
    # Content and order come from one stream, noise from per-note streams: the same seed gives
    # the same notes in the same order at any noise level, which makes noise levels comparable.
    labels = [[r["label"] for r in rows] for rows in corpora.values()]
    assert labels[0] == labels[1] == labels[2]
    clean_words = [len(r["text"].split()) for r in corpora[0.0]]
    noisy_words = [len(r["text"].split()) for r in corpora[1.0]]
    # Noise joins some words ("reorderof") but never adds or removes content.
    assert all(n <= c for n, c in zip(noisy_words, clean_words))
    assert sum(noisy_words) > 0.85 * sum(clean_words)


def test_clean_notes_have_single_spaces_and_a_realistic_length(corpora):
    texts = [r["text"] for r in corpora[0.0]]
    assert not any("  " in t for t in texts)
    assert all(t == t.strip() for t in texts)
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) >= 8 and max(lengths) <= 60
    # Varied, not all the same size: short and long notes both occur.
    assert sum(n <= 20 for n in lengths) > 100 and sum(n >= 40 for n in lengths) > 100


def test_more_noise_means_measurably_more_lowercasing_typos_and_spacing_damage(corpora):
    clean_vocab = {w for r in corpora[0.0] for w in _tokens(r["text"])}

    def stats(rows: list[dict[str, str]]) -> tuple[float, float, float]:
        texts = [r["text"] for r in rows]
        lowercased = sum(t == t.lower() for t in texts) / len(texts)
        tokens = [w for t in texts for w in _tokens(t)]
        unseen = sum(w not in clean_vocab for w in tokens) / len(tokens)  # typos, joins, abbreviations
        spacing = sum("  " in t or t != t.rstrip() for t in texts) / len(texts)
        return lowercased, unseen, spacing

    clean, mid, full = stats(corpora[0.0]), stats(corpora[0.3]), stats(corpora[1.0])
    assert clean == (0.0, 0.0, 0.0)
    assert full[0] > 0.4 and full[0] > mid[0] + 0.2  # whole-note lowercasing
    assert full[1] > 0.08 and full[1] > 2 * mid[1] > 0  # misspelt / merged / abbreviated tokens
    assert full[2] > mid[2] > 0.1  # doubled and trailing whitespace
    noisy_texts = " ".join(r["text"] for r in corpora[1.0]).lower()
    for abbreviation in ("qty", "pls", "asap", "w/", "b/c"):
        assert abbreviation in noisy_texts


@pytest.mark.parametrize("noise", [0.0, 0.5, 1.0])
def test_no_text_is_ever_empty(noise: float):
    for seed in range(3):
        rows = generate_sales_notes(60, seed=seed, noise=noise)
        assert all(r["text"].strip() and len(r["text"].split()) >= 4 for r in rows)


def test_notes_are_varied(corpora):
    for noise in (0.0, 0.3):
        texts = [r["text"] for r in corpora[noise]]
        assert len(set(texts)) >= 0.95 * len(texts)
    words = {w for r in corpora[0.0] for w in _tokens(r["text"]) if w.isalpha()}
    assert len(words) >= 800
    # Many phrasings per class, not a handful of templates: at least 12 core sentences per
    # class, and each of them actually shows up in the default-size data set.
    for label in LABELS:
        cores = sales_notes.PHRASES.cores[label]
        assert len(cores) >= 12, label
        texts = [r["text"] for r in corpora[0.0] if r["label"] == label]
        for core in cores:
            fixed = max(re.split(r"\{[a-z_0-9]+\}", core), key=len).strip(" ,.;:-")  # longest literal piece
            assert any(fixed in t for t in texts), (label, core)


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_no_single_token_gives_a_class_away(corpora, noise: float):
    # A giveaway: a token in >90% of one class's notes and in <5% of all other notes.
    by_label = collections.defaultdict(list)
    for r in corpora[noise]:
        by_label[r["label"]].append(set(_tokens(r["text"])))
    for label in LABELS:
        own = by_label[label]
        rest = [s for other in LABELS if other != label for s in by_label[other]]
        own_df = collections.Counter(w for s in own for w in s)
        rest_df = collections.Counter(w for s in rest for w in s)
        giveaways = [w for w, n in own_df.items() if n > 0.9 * len(own) and rest_df[w] < 0.05 * len(rest)]
        assert not giveaways, (label, giveaways)
        # Even the most class-specific token covers well under half of its class.
        best = max(own_df[w] / len(own) - rest_df[w] / len(rest) for w in own_df)
        assert best < 0.5, label


def test_a_bag_of_words_model_learns_the_task_but_not_perfectly(corpora):
    # Multinomial naive Bayes on binary token features, 70/30 split of the already shuffled rows:
    # far above the 20% chance level (the task is learnable), clearly below 100% (it is not a
    # keyword lookup: mixed intents, "not X but Y" notes and denials need word order to resolve).
    rows = corpora[0.3]
    cut = int(0.7 * len(rows))
    train, test = rows[:cut], rows[cut:]
    counts = {label: collections.Counter() for label in LABELS}
    for r in train:
        counts[r["label"]].update(set(_tokens(r["text"])))
    vocab_size = len({w for c in counts.values() for w in c})
    log_p = {
        label: collections.defaultdict(
            lambda total=sum(c.values()): math.log(1 / (total + vocab_size)),
            {w: math.log((n + 1) / (sum(c.values()) + vocab_size)) for w, n in c.items()},
        )
        for label, c in counts.items()
    }
    correct = 0
    for r in test:
        words = set(_tokens(r["text"]))
        scores = {label: sum(log_p[label][w] for w in words) for label in LABELS}
        correct += max(scores, key=scores.get) == r["label"]
    accuracy = correct / len(test)
    assert 0.7 < accuracy < 0.96, accuracy


@pytest.mark.parametrize("bad", [0, -5, 2.5, "400", None, True])
def test_n_per_class_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=r"n_per_class=.*integer >= 1"):
        generate_sales_notes(bad)


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), "0.3", None])
def test_noise_must_be_between_0_and_1(bad):
    with pytest.raises(ValueError, match=r"noise=.*\[0, 1\]"):
        generate_sales_notes(5, seed=0, noise=bad)


@pytest.mark.parametrize("noise", [0, 1, 0.0, 1.0])
def test_noise_bounds_are_inclusive(noise):
    assert len(generate_sales_notes(2, seed=0, noise=noise)) == 10


@pytest.mark.parametrize("bad", ["0", 1.5, None, True])
def test_seed_must_be_an_integer(bad):
    with pytest.raises(ValueError, match=r"seed=.*must be an integer; pass e\.g\. seed=0"):
        generate_sales_notes(5, seed=bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"n_per_class": 0},
            r"dataset\.n_per_class=0: must be an integer >= 1 \(notes per intent\); "
            r"pass e\.g\. dataset\.n_per_class=400",
        ),
        ({"noise": 1.5}, r"dataset\.noise=1\.5: must be a number in \[0, 1\].*dataset\.noise=0\.3"),
        ({"generator_seed": "1"}, r"dataset\.generator_seed='1': must be an integer"),
    ],
)
def test_invalid_source_arguments_fail_at_construction_with_the_config_key(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        SyntheticSalesNotes(name="b2b_sales_notes", **kwargs)


def test_the_source_identity_stamps_the_generator_and_its_phrase_tables():
    # An edit of either is a new dataset: the tokenized-data cache must not serve the old rows.
    stamped = {path for path, _, _ in SyntheticSalesNotes(name="b2b_sales_notes").identity()["files"]}
    assert stamped == {sales_notes.__file__, str(table_path("sales_notes"))}
