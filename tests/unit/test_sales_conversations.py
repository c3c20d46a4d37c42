"""Synthetic sales call transcripts: deterministic, well-formed, an outcome tied to context and dialogue, a Source.

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

from lora_lab.data.synthetic.sales_conversations import (
    CONTEXT_FIELDS,
    LABELS,
    SalesConversations,
    generate_sales_conversations,
    render,
)
from tests.helpers import digest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = re.compile(r"[a-z0-9']+")
LINE = re.compile(r"^(Rep|Prospect): \S")
VALUES = {
    "company_size": {"1-10", "11-50", "51-200", "201-1000", "1000+"},
    "urgency": {"low", "medium", "high"},
    "budget_authority": {"yes", "shared", "no"},
    "lead_source": {"inbound web", "referral", "trade show", "cold outbound", "partner", "webinar"},
}


def _converted_share(rows: list[dict]) -> float:
    return sum(r["label"] == "converted" for r in rows) / len(rows)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    """The default data set (2000 calls, seed 0, noise 0.2), generated once."""
    return generate_sales_conversations(2000, seed=0, noise=0.2)


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def test_same_arguments_give_identical_rows_and_a_smaller_n_is_a_prefix(rows):
    assert generate_sales_conversations(300, seed=0, noise=0.2) == rows[:300]


def test_output_is_identical_in_another_process_with_another_hash_seed(rows):
    code = (
        "import hashlib, json\n"
        "from lora_lab.data.synthetic.sales_conversations import generate_sales_conversations\n"
        "rows = generate_sales_conversations(200, seed=0, noise=0.2)\n"
        "print(hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == digest(rows[:200])


def test_a_different_seed_gives_different_calls(rows):
    other = generate_sales_conversations(300, seed=1, noise=0.2)
    assert not any(a["transcript"] == b["transcript"] for a, b in zip(other, rows))
    assert [r["label"] for r in other] != [r["label"] for r in rows[:300]]


def test_noise_changes_only_the_transcript_wording():
    clean, noisy = (generate_sales_conversations(300, seed=0, noise=x) for x in (0.0, 1.0))
    strip = lambda r: {k: v for k, v in r.items() if k != "transcript"}  # noqa: E731 - a one-line helper
    assert [strip(r) for r in clean] == [strip(r) for r in noisy]
    # Same turns, same speakers: noise only touches the utterances.
    speakers = lambda r: [line.split(":")[0] for line in r["transcript"].split("\n")]  # noqa: E731 - a one-line helper
    assert [speakers(r) for r in clean] == [speakers(r) for r in noisy]
    assert not any("[inaudible]" in r["transcript"] or "um," in r["transcript"] for r in clean)
    assert sum(a["transcript"] != b["transcript"] for a, b in zip(clean, noisy)) == 300


# ---------------------------------------------------------------------------------------------
# Shape of the rows
# ---------------------------------------------------------------------------------------------


def test_rows_have_the_context_fields_a_transcript_a_label_and_the_cues(rows):
    for row in rows:
        assert list(row) == [*CONTEXT_FIELDS, "transcript", "label", "cues"]
        for field, allowed in VALUES.items():
            assert row[field] in allowed, (field, row[field])
        assert isinstance(row["industry"], str) and isinstance(row["contact_role"], str)
        assert isinstance(row["previous_interactions"], int) and 0 <= row["previous_interactions"] <= 9
    assert len({r["industry"] for r in rows}) >= 8 and len({r["contact_role"] for r in rows}) >= 8


def test_transcripts_are_6_to_20_alternating_turns_opened_by_the_rep(rows):
    lengths = collections.Counter()
    for row in rows:
        lines = row["transcript"].split("\n")
        lengths[len(lines)] += 1
        assert 6 <= len(lines) <= 20
        assert all(LINE.match(line) for line in lines), row["transcript"]
        speakers = [line.split(":")[0] for line in lines]
        assert speakers[0] == "Rep" and all(a != b for a, b in zip(speakers, speakers[1:]))
    assert len(lengths) >= 10  # lengths vary, not one fixed script
    assert len({r["transcript"] for r in rows}) == len(rows)


def test_labels_are_binary_and_about_a_third_converted(rows):
    assert LABELS == ("converted", "not_converted")
    assert {r["label"] for r in rows} == set(LABELS)
    assert 0.30 <= _converted_share(rows) <= 0.45
    # The label word itself never shows up in the text a classifier sees.
    assert not any("convert" in render(r, include_context=True).lower() for r in rows)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def test_render_puts_a_context_header_above_the_unchanged_transcript(rows):
    row = {
        "company_size": "51-200",
        "industry": "logistics",
        "contact_role": "ops manager",
        "urgency": "high",
        "budget_authority": "yes",
        "previous_interactions": 3,
        "lead_source": "referral",
        "transcript": "Rep: Hi.\nProspect: Hello.",
    }
    assert render(row, include_context=True) == (
        "[company_size: 51-200 | industry: logistics | role: ops manager | urgency: high | budget_authority: yes"
        " | previous_interactions: 3 | lead_source: referral]\nRep: Hi.\nProspect: Hello."
    )
    assert render(row, include_context=False) == "Rep: Hi.\nProspect: Hello."
    for row in rows[:50]:
        header, body = render(row, include_context=True).split("\n", 1)
        assert (
            header.startswith("[company_size: ") and header.endswith("]") and f"urgency: {row['urgency']} |" in header
        )
        assert body == row["transcript"] == render(row, include_context=False)


# ---------------------------------------------------------------------------------------------
# The outcome depends on context and on the dialogue, and neither decides it alone
# ---------------------------------------------------------------------------------------------


def _rate(rows: list[dict], **where: str) -> float:
    match = [r for r in rows if all(r[k] == v if k in r else r["cues"][k] == v for k, v in where.items())]
    assert len(match) >= 30, f"too few rows for {where} to measure a rate"
    return _converted_share(match)


def test_conversion_rate_differs_by_context(rows):
    # Measured on seed 0: high 0.61 / low 0.17 urgency; budget yes 0.54 / no 0.15.
    assert _rate(rows, urgency="high") - _rate(rows, urgency="low") > 0.25
    assert _rate(rows, budget_authority="yes") - _rate(rows, budget_authority="no") > 0.25
    assert _rate(rows, lead_source="referral") > _rate(rows, lead_source="cold outbound") + 0.2


def test_dialogue_cues_matter_within_a_context_and_context_matters_within_a_cue(rows):
    # A booked next step vs none, at fixed urgency (measured differences 0.34-0.54).
    for urgency in VALUES["urgency"]:
        assert (
            _rate(rows, urgency=urgency, next_steps="concrete") - _rate(rows, urgency=urgency, next_steps="none") > 0.2
        )
    # High vs low urgency, at a fixed next-step outcome (measured differences 0.27-0.48).
    for next_steps in ("concrete", "vague", "none"):
        assert (
            _rate(rows, next_steps=next_steps, urgency="high") - _rate(rows, next_steps=next_steps, urgency="low")
            > 0.15
        )
    assert _rate(rows, objection="handled") - _rate(rows, objection="unresolved") > 0.2
    assert _rate(rows, pricing="in_range") - _rate(rows, pricing="pushback") > 0.2


def _naive_bayes_accuracy(train: list[dict], test: list[dict], features) -> float:
    """Held-out accuracy of a Bernoulli-style naive Bayes (distinct features per row, add-one smoothing)."""
    counts = {label: collections.Counter() for label in LABELS}
    prior = collections.Counter(r["label"] for r in train)
    for row in train:
        counts[row["label"]].update(features(row))
    vocabulary = len(set(counts[LABELS[0]]) | set(counts[LABELS[1]]))
    totals = {label: sum(c.values()) for label, c in counts.items()}

    def log_score(row: dict, label: str) -> float:
        words = features(row)
        return math.log(prior[label]) + sum(
            math.log((counts[label][w] + 1) / (totals[label] + vocabulary)) for w in words
        )

    return sum(max(LABELS, key=lambda label: log_score(row, label)) == row["label"] for row in test) / len(test)


def test_transcript_and_context_each_predict_held_out_outcomes_but_neither_solves_it(rows):
    train, test = rows[:1400], rows[1400:]
    majority = max(_converted_share(test), 1 - _converted_share(test))
    transcript = _naive_bayes_accuracy(train, test, lambda r: sorted(set(TOKEN.findall(r["transcript"].lower()))))
    context = _naive_bayes_accuracy(train, test, lambda r: [f"{f}={r[f]}" for f in CONTEXT_FIELDS])
    # Measured on seed 0: majority 0.665, transcript words 0.72, context fields 0.77.
    assert transcript > majority + 0.04
    assert context > majority + 0.04
    assert max(transcript, context) < 0.85


# ---------------------------------------------------------------------------------------------
# The Source and its config
# ---------------------------------------------------------------------------------------------


def test_source_keeps_the_context_as_extra_columns_aligned_with_the_rows():
    source = SalesConversations(n=300, include_context=True, name="sales_conversations")
    train = source.read()["train"]
    assert list(train.extra) == list(CONTEXT_FIELDS)
    assert all(len(column) == len(train) == 300 for column in train.extra.values())
    for i in range(len(train)):
        header = train.texts[i].split("\n", 1)[0]
        assert f"urgency: {train.extra['urgency'][i]} |" in header
        assert f"previous_interactions: {train.extra['previous_interactions'][i]} |" in header


def test_include_context_false_gives_bare_transcripts_with_the_same_extra_columns():
    with_context = SalesConversations(n=100, name="s").read()["train"]
    bare = SalesConversations(n=100, include_context=False, name="s").read()["train"]
    assert all(t.startswith("Rep: ") for t in bare.texts)
    assert [t.split("\n", 1)[1] for t in with_context.texts] == bare.texts
    assert bare.labels == with_context.labels and bare.extra == with_context.extra


def test_load_gives_stratified_train_validation_test_with_aligned_extra_columns():
    splits = SalesConversations(n=600, name="sales_conversations").load()
    assert {name: len(s) for name, s in splits.items()} == {"train": 420, "validation": 90, "test": 90}
    overall = sum(s.labels.count("converted") for s in splits.values()) / 600
    for split in splits.values():
        assert abs(split.labels.count("converted") / len(split) - overall) < 0.02
        assert all(len(column) == len(split) for column in split.extra.values())
        assert all(f"urgency: {u} |" in t for t, u in zip(split.texts, split.extra["urgency"]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, r"n=0: must be an integer >= 1.*n=2000"),
        ({"n": 2.5}, r"n=2\.5: must be an integer"),
        ({"n": True}, r"n=True: must be an integer"),
        ({"seed": "0"}, r"seed='0': must be an integer; pass e\.g\. seed=0"),
        ({"noise": -0.1}, r"noise=-0\.1: must be a number in \[0, 1\].*noise=0\.2"),
        ({"noise": 1.5}, r"noise=1\.5: must be a number in \[0, 1\]"),
    ],
)
def test_invalid_generator_arguments_name_the_argument_and_the_fix(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        generate_sales_conversations(**kwargs)


def test_invalid_source_arguments_fail_at_construction_with_the_config_key():
    with pytest.raises(ValueError, match=r"dataset\.n=-5: must be an integer >= 1"):
        SalesConversations(n=-5, name="s")
    with pytest.raises(ValueError, match=r"dataset\.include_context='false': must be true or false"):
        SalesConversations(include_context="false", name="s")
    with pytest.raises(ValueError, match=r"include_context=1: must be true or false"):
        render({"transcript": "Rep: Hi."}, include_context=1)


def test_the_hydra_config_composes_and_loads(tmp_path: Path):
    from hydra.utils import instantiate

    from tests.helpers import compose_train

    cfg = compose_train(tmp_path, ["dataset=sales_conversations"])
    assert cfg.dataset.include_context is True and cfg.dataset.n == 2000
    splits = instantiate(cfg.dataset).load()
    assert {name: len(s) for name, s in splits.items()} == {"train": 1400, "validation": 300, "test": 300}
    assert splits["train"].texts[0].startswith("[company_size: ")
    assert set(splits["test"].extra) == set(CONTEXT_FIELDS)


def test_the_source_identity_stamps_every_generator_module_and_the_phrase_tables():
    # An edit of any of them is a new dataset: the tokenized-data cache must not serve the old rows.
    from lora_lab.data.synthetic import conversation_dialogue, conversation_outcome, sales_conversations, tables

    stamped = {path for path, _, _ in SalesConversations(n=10, name="s").identity()["files"]}
    modules = (sales_conversations, conversation_outcome, conversation_dialogue)
    assert stamped == {*(module.__file__ for module in modules), str(tables.table_path("sales_conversations"))}
