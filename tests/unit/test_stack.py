"""stack=tfidf: the trained model mixed with TF-IDF, its weight picked on validation, shipped as one model."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import torch

from lora_lab.artifacts import read_json
from lora_lab.job.dir import JobDir
from lora_lab.models.stack import WEIGHT_GRID, load_stack, pick_weight
from tests.helpers import finished_job, write_csv

WORDS = {
    "billing": ["invoice", "charge", "refund", "card", "payment", "price"],
    "login": ["password", "account", "locked", "reset", "username", "sign"],
    "shipping": ["parcel", "delivery", "courier", "tracking", "address", "late"],
}


def ticket_file(path: Path, test_labels_shuffled: bool = False) -> Path:
    """120 noisy tickets with fixed train/validation rows (split column); the test rows' labels can be
    shuffled, which changes nothing the stack may look at before its weight is picked."""
    rng = random.Random(0)
    rows = []
    for i in range(150):
        label = list(WORDS)[i % 3]
        words = rng.sample(WORDS[label], 2) + rng.sample([w for ws in WORDS.values() for w in ws], 3)
        rng.shuffle(words)
        split = "train" if i < 90 else "validation" if i < 120 else "test"
        rows.append({"text": f"ticket {i}: " + " ".join(words), "label": label, "split": split})
    if test_labels_shuffled:
        test = [r for r in rows if r["split"] == "test"]
        labels = [r["label"] for r in test]
        random.Random(1).shuffle(labels)
        for row, label in zip(test, labels):
            row["label"] = label
    return write_csv(path, rows)


def stacked_job(run_dir: Path, data: Path) -> Path:
    return finished_job(
        run_dir, "dataset=csv", f"dataset.path={data}", "dataset.split_column=split", "stack=tfidf", "logger=none"
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stack")
    return stacked_job(root / "job", ticket_file(root / "tickets.csv"))


def test_a_stacked_job_reports_its_parts_and_the_mix(job: Path):
    metrics = read_json(job / "metrics.json")
    assert metrics["stack/with"] == "tfidf" and metrics["stack/weight"] in WEIGHT_GRID
    for part in ("lora", "tfidf"):
        assert 0 <= metrics[f"parts/{part}/test/acc"] <= 1
    stack = load_stack(job / "stack")
    tried = stack.info["weights_tried"]
    assert [row["weight"] for row in tried] == list(WEIGHT_GRID)
    # The weight is the one with the least validation log loss; the job's val/acc_best is the stack's there.
    best = min(tried, key=lambda row: row["val_log_loss"])
    assert stack.weight == best["weight"] and metrics["val/acc_best"] == pytest.approx(best["val_acc"])
    assert metrics["artifact/stack_bytes"] > 0
    # Each test row's recorded answer is the mix's: they give the job's test accuracy back.
    correct = JobDir(job).test_correct()
    assert len(correct) == metrics["data/test_rows"] and sum(correct) / len(correct) == pytest.approx(
        metrics["test/acc"]
    )


def test_the_predictor_eval_server_and_export_answer_with_the_mix(job: Path, tmp_path: Path):
    from lora_lab.eval import evaluate
    from lora_lab.export.bundle import export_job
    from lora_lab.models.predictor import Predictor
    from lora_lab.serve.engine import Engine
    from lora_lab.serve.sources import resolve_source

    texts = ["ticket: invoice refund card late", "ticket: password locked account", "parcel tracking address"]
    stacked = Predictor(job / "merged", trace=False)
    alone = Predictor(job / "merged", trace=False, stack=False)
    stack = load_stack(job / "stack")
    assert stacked.stack is not None and alone.stack is None
    want = stack.weight * alone.probabilities(texts) + (1 - stack.weight) * stack.tfidf_probs(texts)
    torch.testing.assert_close(stacked.probabilities(texts), want, rtol=1e-5, atol=1e-6)
    assert stacked.predict_one(texts[0]) == stacked.predict(texts)[0]

    # eval re-scores the job's test split with the mix: the saved figures again.
    results = evaluate(job, tmp_path / "eval")
    saved = read_json(job / "metrics.json")
    assert results["test/acc"] == pytest.approx(saved["test/acc"], abs=1e-6)
    assert results["parts/lora/test/acc"] == pytest.approx(saved["parts/lora/test/acc"], abs=1e-6)

    engine = Engine()
    engine.load("tickets", resolve_source(job))
    assert engine.models["tickets"].stack is not None
    torch.testing.assert_close(engine.predict([("tickets", texts)])[0], want, rtol=1e-4, atol=1e-5)
    # A batch of separate requests (the server's usual case): one TF-IDF pass, each request its own rows.
    separate = engine.predict([("tickets", texts[:1]), ("tickets", texts[1:])])
    torch.testing.assert_close(torch.cat(separate), want, rtol=1e-4, atol=1e-5)

    exported = tmp_path / "export"
    export_job(job, exported)
    assert (exported / "stack" / "stack.json").is_file()
    torch.testing.assert_close(Predictor(exported / "merged", trace=False).probabilities(texts), want)
    assert "this model is a stack" in (exported / "README.md").read_text()


def test_merged_without_its_stack_refuses_to_answer_alone(job: Path, tmp_path: Path):
    from lora_lab.errors import ConfigError
    from lora_lab.models.predictor import Predictor
    from lora_lab.serve.sources import resolve_source

    copy = tmp_path / "job"
    shutil.copytree(job, copy, ignore=shutil.ignore_patterns("stack"))
    with pytest.raises(FileNotFoundError, match="copy the job's stack/ beside merged/"):
        Predictor(copy / "merged", trace=False)
    with pytest.raises(ConfigError, match="stack/ is missing"):
        resolve_source(copy)
    assert Predictor(copy / "merged", trace=False, stack=False).stack is None  # asked for explicitly


def test_the_weight_is_picked_without_the_test_split(job: Path, tmp_path: Path):
    """Shuffling the test labels changes the test scores, not the weight or the TF-IDF part."""
    other = stacked_job(tmp_path / "job", ticket_file(tmp_path / "tickets.csv", test_labels_shuffled=True))
    a, b = load_stack(job / "stack"), load_stack(other / "stack")
    assert a.weight == b.weight and a.info["weights_tried"] == b.info["weights_tried"]
    assert a.info["tfidf"] == b.info["tfidf"]
    assert torch.equal(a.tfidf.coef, b.tfidf.coef)
    assert read_json(job / "metrics.json")["test/acc"] != read_json(other / "metrics.json")["test/acc"]


def test_pick_weight_minimises_validation_log_loss_and_prefers_the_model_on_ties():
    # Each part is confidently wrong on one row: the even mix hedges both.
    labels = torch.tensor([0, 1])
    model = torch.tensor([[0.95, 0.05], [0.9, 0.1]])
    tfidf = torch.tensor([[0.1, 0.9], [0.1, 0.9]])
    weight, table = pick_weight(model, tfidf, labels, grid=(0.0, 0.5, 1.0))
    losses = {row["weight"]: row["val_log_loss"] for row in table}
    assert weight == min(losses, key=losses.get) == 0.5
    assert losses[0.5] < losses[0.0] and losses[0.5] < losses[1.0]
    same = torch.tensor([[0.5, 0.5]] * 2)
    assert pick_weight(same, same, labels, grid=(0.0, 0.5, 1.0))[0] == 1.0  # equal losses: the model alone


def test_the_report_shows_a_stack_as_a_configuration_of_its_own(job: Path):
    from lora_lab.report.collect import read_job

    row = read_job(job)
    assert row.regime == "lora+tfidf" and row.metrics["test/acc"] == read_json(job / "metrics.json")["test/acc"]


def test_the_stack_reports_the_mixs_validation_scores_and_keeps_its_parts(job: Path):
    metrics = read_json(job / "metrics.json")
    assert metrics["val/acc"] == pytest.approx(metrics["val/acc_best"])  # the mix's, at the picked weight
    assert 0 <= metrics["val/f1_macro"] <= 1 and "parts/lora/val/f1_macro" in metrics
