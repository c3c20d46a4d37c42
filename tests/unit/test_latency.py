"""Every job measures what serving one text costs (lora_lab/job/latency.py)."""

from __future__ import annotations

from pathlib import Path

from lora_lab.job import latency
from lora_lab.job.dir import JobDir
from tests.helpers import finished_job


def test_a_job_times_its_shipped_model_one_test_text_at_a_time(served_jobs: dict[str, Path]):
    metrics = JobDir(served_jobs["sales"]).metrics()
    assert 0 < metrics["latency/p50_ms"] <= metrics["latency/p95_ms"]
    assert 0 < metrics["latency/int8_p50_ms"] <= metrics["latency/int8_p95_ms"]
    assert metrics["latency/precision"] in ("fp32", "bf16")
    # Tiny models answer in well under LIMIT_S: every sampled test text was timed.
    assert metrics["latency/single_texts"] == min(latency.SINGLE_TEXTS, metrics["data/test_rows"])


def test_a_model_without_merged_form_is_timed_in_memory_without_an_int8_figure(tmp_path: Path):
    metrics = JobDir(finished_job(tmp_path / "tfidf", "regime=tfidf", "stack=none")).metrics()
    assert not (tmp_path / "tfidf" / "merged").exists()
    assert 0 < metrics["latency/p50_ms"] <= metrics["latency/p95_ms"]
    assert "latency/int8_p50_ms" not in metrics


def test_the_time_limit_cuts_the_sample(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(latency, "LIMIT_S", 0.0)
    timings = latency.time_one_at_a_time(calls.append, [f"text {i}" for i in range(50)], bf16=False)
    assert len(timings) == 1  # the first timed call starts after the (zero) limit: the loop stops after it
    assert len(calls) == latency.WARMUP + 1


def test_the_sample_is_seeded_and_bounded():
    texts = [f"text {i}" for i in range(500)]
    first = latency.sample_texts(texts, seed=1)
    assert first == latency.sample_texts(texts, seed=1) != latency.sample_texts(texts, seed=2)
    assert len(first) == latency.SINGLE_TEXTS and set(first) <= set(texts)
    assert latency.sample_texts(texts[:5], seed=1) != [] and len(latency.sample_texts(texts[:5], seed=1)) == 5
