"""Evaluation additions: AUCs, calibration, confused pairs (hand-made arrays), and lora_lab.eval end to end.

Subprocess: test_cli_evaluates_a_file_and_prints_the_pairs_table runs `python -m lora_lab.eval`,
because the command's printed table and exit codes are what it tests; the rest runs in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lora_lab.artifacts import read_json
from lora_lab.errors import ConfigError, DataError
from lora_lab.eval import evaluate, summary
from lora_lab.models.evaluation import (
    auc_scores,
    confused_pairs,
    expected_calibration_error,
    pairs_table,
    reliability_bins,
    score_probabilities,
    shorten,
)
from tests.helpers import TINY, compose_train, save_hydra_config, write_csv


def binary(p1: list[float]) -> np.ndarray:
    """Two-label probabilities from the probability of label id 1."""
    p1 = np.asarray(p1, dtype=float)
    return np.stack([1 - p1, p1], axis=1)


# --- AUC -------------------------------------------------------------------------------------


def test_binary_auc_perfect_reversed_and_a_known_case():
    labels = np.array([0, 0, 1, 1])
    assert auc_scores(binary([0.1, 0.2, 0.8, 0.9]), labels) == {"roc_auc": 1.0, "pr_auc": 1.0, "left_out": []}
    reversed_ = auc_scores(binary([0.9, 0.8, 0.2, 0.1]), labels)
    # Both positives ranked last: precision 1/3 at the first, 2/4 at the second, each half the recall.
    assert reversed_["roc_auc"] == 0.0 and reversed_["pr_auc"] == pytest.approx(0.5 * 1 / 3 + 0.5 * 2 / 4)
    # Positives 0.35 and 0.8, negatives 0.1 and 0.4: 3 of the 4 (positive, negative) pairs are ordered right.
    # Ranked 0.8+ 0.4- 0.35+ 0.1-: precision 1 at recall 1/2, 2/3 at recall 1.
    known = auc_scores(binary([0.1, 0.4, 0.35, 0.8]), labels)
    assert known["roc_auc"] == pytest.approx(0.75) and known["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_binary_positive_class_is_label_id_1():
    labels = np.array([0, 0, 1, 1])
    good = binary([0.1, 0.2, 0.8, 0.9])
    assert auc_scores(good, labels)["roc_auc"] == 1.0
    assert auc_scores(good, 1 - labels)["roc_auc"] == 0.0  # the same scores with the ids swapped


def test_multiclass_auc_is_the_one_vs_rest_macro_and_a_missing_class_is_left_out():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.3, 0.5, 0.2], [0.2, 0.2, 0.6]])
    labels = np.array([0, 0, 1, 1])  # label 2 has no rows
    scores = auc_scores(probs, labels)
    # Class 0: positives 0.7, 0.6 above negatives 0.3, 0.2 -> 1. Class 1: positives 0.5, 0.2 against
    # negatives 0.2, 0.3 -> (1 + 1 + 0.5 tie + 0) / 4 = 0.625.
    assert scores["roc_auc_macro"] == pytest.approx((1.0 + 0.625) / 2)
    assert scores["left_out"] == [2]
    # Class 0 AP 1; class 1 ranked 0.5+ 0.3- (0.2+, 0.2- tied: one step, precision 2/4) -> 0.5 * 1 + 0.5 * 0.5.
    assert scores["pr_auc_macro"] == pytest.approx((1.0 + 0.75) / 2)
    perfect = auc_scores(np.eye(3)[[0, 1, 2, 2]] * 0.8 + 0.2 / 3, np.array([0, 1, 2, 2]))
    assert perfect == {"roc_auc_macro": 1.0, "pr_auc_macro": 1.0, "left_out": []}


def test_a_single_class_present_gives_no_auc_and_no_crash():
    assert auc_scores(binary([0.2, 0.7]), np.array([1, 1])) == {"roc_auc": None, "pr_auc": None, "left_out": [0]}
    one = auc_scores(np.full((3, 4), 0.25), np.array([2, 2, 2]))
    assert one["roc_auc_macro"] is None and one["left_out"] == [0, 1, 3]


# --- calibration ------------------------------------------------------------------------------


def test_ece_of_perfectly_calibrated_bins_is_zero():
    # 10 rows at confidence 0.7, 7 of them right; 10 at 0.9, 9 right.
    probs = np.array([[0.7, 0.2, 0.1]] * 10 + [[0.9, 0.05, 0.05]] * 10)
    labels = np.array([0] * 7 + [1] * 3 + [0] * 9 + [2])
    assert expected_calibration_error(probs, labels, 15) == pytest.approx(0.0, abs=1e-12)
    bins = reliability_bins(probs, labels, 15)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 20
    filled = [b for b in bins if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in filled] == [(10, pytest.approx(0.7)), (10, pytest.approx(0.9))]
    assert filled[0]["lower"] < 0.7 <= filled[0]["upper"] and filled[1]["lower"] < 0.9 <= filled[1]["upper"]
    assert all(b["accuracy"] is None and b["confidence"] is None for b in bins if not b["count"])


def test_ece_of_an_over_confident_model_is_the_hand_computed_value():
    # 10 rows at 0.95 with 6 right (gap 0.35), 10 rows at 0.65 with 5 right (gap 0.15):
    # ECE = 10/20 * 0.35 + 10/20 * 0.15 = 0.25.
    probs = binary([0.95] * 10 + [0.35] * 10)  # the second group's top label is 0, at 0.65
    labels = np.array([1] * 6 + [0] * 4 + [0] * 5 + [1] * 5)
    assert expected_calibration_error(probs, labels, 15) == pytest.approx(0.25)
    # One bin: |mean accuracy - mean confidence| = |0.55 - 0.8|.
    assert expected_calibration_error(probs, labels, 1) == pytest.approx(0.25)


def test_bins_are_closed_on_the_right():
    probs = binary([0.5, 0.75, 1.0])  # top-label confidences 0.5, 0.75, 1.0
    bins = reliability_bins(probs, np.array([0, 1, 1]), 4)
    assert [b["count"] for b in bins] == [0, 1, 1, 1]  # (0.25, 0.5], (0.5, 0.75], (0.75, 1]


# --- confused pairs ---------------------------------------------------------------------------


def test_confused_pairs_by_count_with_the_first_three_texts_in_row_order():
    names = ["billing", "login", "refund"]
    labels = [0, 0, 1, 0, 2, 0, 1, 0, 2, 1]
    preds = [1, 1, 0, 1, 1, 0, 0, 1, 1, 1]
    texts = [f"text {i}" for i in range(10)]
    pairs = confused_pairs(labels, preds, texts, names)
    # billing->login 4 rows (0, 1, 3, 7), then 2-row ties by (true, predicted) id: login->billing, refund->login.
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("billing", "login", 4),
        ("login", "billing", 2),
        ("refund", "login", 2),
    ]
    assert pairs[0]["examples"] == ["text 0", "text 1", "text 3"]
    assert pairs[1]["examples"] == ["text 2", "text 6"]
    assert [p["count"] for p in confused_pairs(labels, preds, texts, names, top=1)] == [4]
    assert confused_pairs([0, 1], [0, 1], ["a", "b"], names) == []


def test_long_example_texts_are_shortened_at_a_word():
    long = "Customer   called\nabout " + "the order " * 40
    short = shorten(long, 50)
    assert len(short) <= 50 and short.endswith("…") and "\n" not in short and "  " not in short
    assert short.startswith("Customer called about the order") and not short[:-1].endswith(" ")
    assert shorten("x" * 300, 40) == "x" * 39 + "…"  # no space near the limit: cut mid-word
    assert shorten("fine as it is", 40) == "fine as it is"


def test_scores_of_a_binary_model_name_the_positive_class_and_print_as_a_table():
    scores, pairs = score_probabilities(binary([0.1, 0.8, 0.6]), [0, 1, 0], ["a", "b", "c"], ["no", "yes"], n_bins=5)
    assert scores["roc_auc"] == 1.0 and scores["auc_positive_class"] == "yes" and "roc_auc_macro" not in scores
    assert scores["ece_bins"] == 5 and len(scores["reliability"]) == 5 and scores["auc_left_out"] == []
    assert score_probabilities(binary([0.3, 0.6]), [1, 1], ["a", "b"], ["no", "yes"])[0]["auc_left_out"] == ["no"]
    assert scores["ece"] == pytest.approx((0.1 + 0.2 + 0.6) / 3)  # each row alone in its bin: |right - confidence|
    assert pairs == [{"true": "no", "predicted": "yes", "count": 1, "examples": ["c"]}]
    assert pairs_table(pairs).splitlines()[1].split() == ["1", "no", "->", "yes", "c"]
    # What eval prints when one class is missing from the rows: n/a, not a crash.
    results = {
        "run_dir": "job",
        "loaded_from": "merged",
        "evaluated": "new.csv",
        "data/rows": 3,
        "data/problems": [],
        "file/acc": 0.5,
        "file/f1_macro": 0.4,
        "file/roc_auc": None,
        "file/pr_auc": None,
        "file/ece": 0.1,
        "file/ece_bins": 15,
        "file/auc_positive_class": "yes",
    }
    printed = summary(results, pairs, "file")
    assert "file/roc_auc n/a, file/pr_auc n/a, file/ece 0.1000 (15 bins); positive class 'yes'" in printed
    assert printed.splitlines()[-1].split() == ["1", "no", "->", "yes", "c"]


# --- lora_lab.eval end to end on a tiny job -----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny job (5 labels, 20 test rows) that every end-to-end test evaluates again."""
    from lora_lab.train import train

    run_dir = tmp_path_factory.mktemp("eval") / "job"
    cfg = compose_train(run_dir, [*TINY, "regime=head", "regime.learning_rate=5e-2", "trainer.max_epochs=2"])
    save_hydra_config(cfg, run_dir)
    train(cfg)
    GlobalHydra.instance().clear()
    return run_dir


def job_split(run_dir: Path, name: str):
    """The job's own dataset split `name`, as the job loaded it."""
    return instantiate(OmegaConf.load(run_dir / ".hydra" / "config.yaml").dataset).load()[name]


def test_eval_on_the_test_split_writes_aucs_ece_reliability_and_pairs(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "eval"
    results = evaluate(tiny_run, out)
    saved = read_json(tiny_run / "metrics.json")
    assert results["test/acc"] == pytest.approx(saved["test/acc"], abs=1e-6) == results["saved/test/acc"]
    for key in ("test/roc_auc_macro", "test/pr_auc_macro", "test/ece"):
        assert 0 <= results[key] <= 1, key
    assert results["test/auc_left_out"] == [] and results["test/ece_bins"] == 15 and results["data/rows"] == 20
    assert sum(b["count"] for b in results["test/reliability"]) == 20
    assert read_json(out / "eval_metrics.json") == json.loads(json.dumps(results))
    png = (out / "reliability.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    # The pairs agree with the confusion matrix the job saved: the probabilities went back to their rows.
    names = [read_json(tiny_run / "labels.json")["id2label"][str(i)] for i in range(5)]
    matrix = saved["test/confusion_matrix"]
    expected = sorted((-matrix[t][p], t, p) for t in range(5) for p in range(5) if t != p and matrix[t][p])[:10]
    pairs = read_json(out / "confused_pairs.json")
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        (names[t], names[p], -n) for n, t, p in expected
    ]
    test = job_split(tiny_run, "test")
    for pair in pairs:
        rows = [shorten(t) for t, y in zip(test.texts, test.labels) if y == pair["true"]]
        assert 1 <= len(pair["examples"]) <= 3 and all(e in rows for e in pair["examples"])
    assert not (tiny_run / "eval_metrics.json").exists() and not (tiny_run / "reliability.png").exists()


def test_eval_on_the_validation_split(tiny_run: Path, tmp_path: Path):
    results = evaluate(tiny_run, tmp_path / "eval", split="validation")
    saved = read_json(tiny_run / "metrics.json")
    assert results["data/rows"] == saved["data/validation_rows"] and results["evaluated"] == "validation split"
    # The shipped model is the best validated epoch, so its val/acc is val/acc_best.
    assert results["val/acc"] == pytest.approx(saved["val/acc_best"], abs=1e-6)
    assert {"val/roc_auc_macro", "val/pr_auc_macro", "val/ece", "val/f1_macro"} <= set(results)
    assert not [k for k in results if k.startswith(("test/", "saved/"))]  # compared only on its own test split


def test_eval_on_a_file_of_new_rows(tiny_run: Path, tmp_path: Path):
    test = job_split(tiny_run, "test")
    # All the test rows as a file (own column names): the same rows, the same scores and pairs.
    whole = write_csv(tmp_path / "whole.csv", [{"body": t, "intent": y} for t, y in zip(test.texts, test.labels)])
    on_split = evaluate(tiny_run, tmp_path / "split")
    on_file = evaluate(tiny_run, tmp_path / "file", data_file=whole, text_column="body", label_column="intent")
    assert on_file["data/rows"] == 20 and on_file["evaluated"] == str(whole)
    for name in ("acc", "f1_macro", "roc_auc_macro", "pr_auc_macro", "ece"):
        assert on_file[f"file/{name}"] == pytest.approx(on_split[f"test/{name}"], abs=1e-6), name
    assert read_json(tmp_path / "file" / "confused_pairs.json") == read_json(tmp_path / "split" / "confused_pairs.json")
    # Some rows of three labels, one with an empty text: exactly those rows, the absent labels named.
    keep = sorted(set(test.labels))[:3]
    rows = [{"text": t, "label": y} for t, y in zip(test.texts, test.labels) if y in keep][:9]
    part = write_csv(tmp_path / "part.csv", [*rows[:4], {"text": "  ", "label": keep[0]}, *rows[4:]])
    results = evaluate(tiny_run, tmp_path / "part", data_file=part)
    assert results["data/rows"] == len(rows) == sum(b["count"] for b in results["file/reliability"])
    assert results["file/auc_left_out"] == sorted(set(test.labels) - set(keep))
    assert any("dropped 1 row(s) with an empty text" in p for p in results["data/problems"])
    assert round(results["file/acc"] * len(rows), 4) == round(results["file/acc"] * len(rows))
    texts = {shorten(r["text"]) for r in rows}
    assert all(e in texts for p in read_json(tmp_path / "part" / "confused_pairs.json") for e in p["examples"])


def test_a_file_with_labels_the_model_does_not_know_is_an_error(tiny_run: Path, tmp_path: Path):
    known = sorted(read_json(tiny_run / "labels.json")["id2label"].values())
    rows = [
        {"text": "please reorder the usual", "label": known[0]},
        {"text": "where is my invoice", "label": "Billing Question"},
    ]
    with pytest.raises(DataError, match=r"\['Billing Question'\].*not labels of this model.*" + known[0]):
        evaluate(tiny_run, tmp_path / "eval", data_file=write_csv(tmp_path / "new.csv", rows))
    with pytest.raises(DataError, match=r"no column 'body' \(text_column\)"):
        evaluate(tiny_run, tmp_path / "eval", data_file=tmp_path / "new.csv", text_column="body")
    jsonl = tmp_path / "new.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match="Billing Question"):
        evaluate(tiny_run, tmp_path / "eval", data_file=jsonl)
    assert not (tmp_path / "eval" / "eval_metrics.json").exists()


@pytest.mark.parametrize(
    "options,message",
    [
        ({"split": "nope"}, "split='nope': use test, validation or train"),
        ({"ece_bins": 0}, "ece_bins=0: use a whole number"),
        ({"confused_pairs": -1}, "confused_pairs=-1"),
        ({"data_file": Path("/nonexistent/new.csv")}, "data_file=/nonexistent/new.csv: no such file"),
        ({"data_file": Path(__file__), "split": "validation"}, "give one of the two"),
        ({"data_file": Path(__file__)}, "name a .csv"),
    ],
)
def test_bad_eval_options_are_config_errors_naming_the_key(tmp_path: Path, options: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        evaluate(tmp_path / "no_job", tmp_path / "eval", **options)  # checked before the job is read


ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_cli_evaluates_a_file_and_prints_the_pairs_table(tiny_run: Path, tmp_path: Path):
    test = job_split(tiny_run, "test")
    csv_path = write_csv(tmp_path / "new.csv", [{"text": t, "label": y} for t, y in zip(test.texts, test.labels)])
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lora_lab.eval",
            f"run_dir={tiny_run}",
            f"data_file={csv_path}",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert f"on {csv_path}, 20 rows: file/acc" in out.stdout and "file/roc_auc_macro" in out.stdout
    pairs = read_json(tmp_path / "eval" / "confused_pairs.json")
    if pairs:
        assert (
            "most confused label pairs" in out.stdout
            and f"{pairs[0]['true']} -> {pairs[0]['predicted']}" in " ".join(out.stdout.split())
        )
    assert (tmp_path / "eval" / "reliability.png").is_file()

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "lora_lab.eval",
            f"run_dir={tiny_run}",
            "split=nope",
            f"hydra.run.dir={tmp_path / 'bad'}",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: split='nope'")
