"""Per-adapter quality telemetry (serve/quality.py): label shares, top-1 probability, long texts, drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lora_lab.job.dir import JobDir
from lora_lab.serve.app import Settings, create_app
from lora_lab.serve.quality import DRIFT_WINDOW, Window, drift
from tests.helpers import TICKETS
from tests.services import wait_for


def test_drift_is_the_total_variation_distance_from_the_training_shares():
    train = {"a": 50, "b": 50}
    assert drift({"a": 0.5, "b": 0.5}, train) == pytest.approx(0.0)
    assert drift({"c": 1.0}, train) == pytest.approx(1.0)  # no label in common
    assert drift({"a": 0.9, "b": 0.1}, train) == pytest.approx(0.4)  # 1/2 (0.4 + 0.4)
    assert drift({"a": 1.0}, {"a": 1, "b": 3}) == pytest.approx(0.75)


def test_the_window_keeps_the_last_texts_and_its_counts_in_step():
    window = Window()
    for i in range(DRIFT_WINDOW + 200):
        window.add("old" if i < 600 else "new", 0.9)
    assert len(window.labels) == DRIFT_WINDOW and window.answered == DRIFT_WINDOW + 200
    assert window.shares() == {"old": pytest.approx(0.4), "new": pytest.approx(0.6)}  # 400 old, 600 new left


def metric(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(selector)}\}} (\S+)$", text, re.M)
    assert found, f"{name}{{{selector}}} not in /metrics"
    return float(found.group(1))


def test_metrics_and_the_adapter_description_show_what_the_model_answers(served_jobs: dict[str, Path]):
    job = served_jobs["tickets"]
    train_counts = JobDir(job).train_label_counts()
    assert train_counts and set(train_counts) == set(TICKETS)  # kept in labels.json at train time
    with TestClient(create_app(Settings(adapters={"tickets": str(job)}, max_text_chars=100_000))) as c:
        wait_for(lambda: c.get("/readyz").status_code == 200, 120, "the server to load its model")
        long_text = " ".join([TICKETS["billing"]] * 400)  # far beyond the job's max_length
        texts = [TICKETS["refund"]] * 6 + [TICKETS["login"]] * 2 + [long_text] * 2
        answers = c.post("/v1/predict", json={"texts": texts, "adapter": "tickets"}).json()["predictions"]
        labels = [a["label"] for a in answers]
        early = c.get("/v1/adapters/tickets").json()["telemetry"]
        assert early["drift"] is None and early["has_reference"]  # 10 texts: too few for a drift figure
        assert "lora_lab_label_drift{" not in c.get("/metrics").text
        for _ in range(9):  # 100 texts in all
            more = c.post("/v1/predict", json={"texts": texts, "adapter": "tickets"}).json()["predictions"]
            labels += [a["label"] for a in more]
        info = c.get("/v1/adapters/tickets").json()["telemetry"]
        body = c.get("/metrics").text
    assert info["texts"] == info["window"] == 100
    live = {label: labels.count(label) / 100 for label in set(labels)}
    assert info["label_shares"] == pytest.approx(live)
    assert info["drift"] == pytest.approx(drift(live, train_counts))
    assert info["long_share"] == pytest.approx(2 / 10) and 0 < info["mean_top1"] <= 1
    for label, share in live.items():
        assert metric(body, "lora_lab_predicted_labels_total", adapter="tickets", label=label) == round(share * 100)
    assert metric(body, "lora_lab_top1_probability_count", adapter="tickets") == 100
    assert metric(body, "lora_lab_label_drift", adapter="tickets") == pytest.approx(info["drift"])
    assert metric(body, "lora_lab_texts_longer_than_max_length_share", adapter="tickets") == pytest.approx(0.2)
