"""An export as the ecosystem loads it (transformers, sentence-transformers, onnxruntime), its check.json,
and an export made from the job dir alone. Optimum, which needs an older transformers, is
tested in its own venv: tests/integration/test_export_loaders.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer, pipeline

from lora_lab.artifacts import read_json
from lora_lab.errors import ConfigError
from lora_lab.export import parity
from lora_lab.export.bundle import export_job
from lora_lab.job.dir import JobDir
from lora_lab.job.outputs import TEST_SAMPLE_ROWS, split_sample
from lora_lab.models.classifier import load_classifier
from lora_lab.serve.sources import resolve_source
from tests.helpers import csv_job, finished_job

TEXTS = [
    "my invoice shows a double charge on the card again",
    "the password reset link is broken, cannot log in",
    "please send my money back for the returned order",
]


@pytest.fixture(scope="module")
def pooled_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoRA on a mean-pooled tiny BERT, exported with onnx/."""
    tmp = tmp_path_factory.mktemp("pooled")
    job = finished_job(tmp / "job", "regime=lora")
    export_job(job, tmp / "export", onnx=True)
    return tmp / "export"


@pytest.fixture(scope="module")
def stock_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full fine-tune with HF's stock [CLS] head."""
    tmp = tmp_path_factory.mktemp("stock")
    job = finished_job(tmp / "job", "regime=full", "backbone.pooling=cls")
    export_job(job, tmp / "export")
    return tmp / "export"


def lora_lab_probabilities(export: Path, texts: list[str] = TEXTS) -> torch.Tensor:
    classifier = load_classifier(export / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(export / "merged"))
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        return classifier(batch["input_ids"], batch["attention_mask"]).softmax(-1)


def pipeline_probabilities(classify, labels: list[str], texts: list[str] = TEXTS) -> torch.Tensor:
    answers = classify(texts, truncation=True, top_k=None)
    return torch.tensor([[{a["label"]: a["score"] for a in answer}[label] for label in labels] for answer in answers])


def test_a_pooled_head_loads_in_a_transformers_pipeline_with_remote_code_and_answers_as_lora_lab(
    pooled_export: Path,
):
    merged = pooled_export / "merged"
    config = read_json(merged / "config.json")
    assert config["auto_map"] == {
        "AutoModelForSequenceClassification": "modeling_lora_lab.LoraLabPooledForSequenceClassification"
    }
    assert config["lora_lab"] == {"pooling": "mean", "normalize": False}
    labels = read_json(pooled_export / "lora_lab_export.json")["labels"]
    assert config["id2label"] == {str(i): label for i, label in enumerate(labels)}
    classify = pipeline("text-classification", model=str(merged), trust_remote_code=True)
    theirs = pipeline_probabilities(classify, labels)
    ours = lora_lab_probabilities(pooled_export)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert theirs.argmax(-1).tolist() == ours.argmax(-1).tolist()
    card = (pooled_export / "README.md").read_text()
    assert 'pipeline("text-classification", model="merged", trust_remote_code=True)' in card
    assert "no stock transformers class does" in card


def test_sentence_transformers_encodes_as_the_servers_similar_index(pooled_export: Path):
    """st/ gives unit-length mean-pooled embeddings of the fine-tuned body: what /v1/similar searches by."""
    classifier = load_classifier(pooled_export / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(pooled_export / "merged"))
    batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        ours = F.normalize(classifier.embed(batch["input_ids"], batch["attention_mask"]), dim=-1).numpy()
    theirs = SentenceTransformer(str(pooled_export / "st"), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    assert np.allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)


def test_check_json_records_each_loader_within_the_tolerance_on_the_jobs_test_sample(pooled_export: Path):
    check = read_json(pooled_export / "check.json")
    assert check["passed"] and check["tolerance"] == 1e-4
    assert set(check["loaders"]) == {"transformers_remote_code", "onnxruntime", "sentence_transformers"}
    for result in check["loaders"].values():
        assert result["passed"] and result["max_abs_diff"] <= 1e-4
    assert check["texts_from"].startswith("the job's test sample")
    # onnx/ holds what Optimum opens: the labels' config (no remote code: the graph is the whole model)
    onnx_config = read_json(pooled_export / "onnx" / "config.json")
    assert "auto_map" not in onnx_config and onnx_config["id2label"]
    assert AutoTokenizer.from_pretrained(str(pooled_export / "onnx")).model_max_length == check["max_length"]


def test_a_stock_head_is_a_plain_transformers_model_with_no_flag(stock_export: Path):
    merged = stock_export / "merged"
    assert not (merged / "modeling_lora_lab.py").exists() and "auto_map" not in read_json(merged / "config.json")
    assert not (stock_export / "st").exists()  # HF's [CLS] head exposes no pooled embedding
    labels = read_json(stock_export / "lora_lab_export.json")["labels"]
    theirs = pipeline_probabilities(pipeline("text-classification", model=str(merged)), labels)
    torch.testing.assert_close(theirs, lora_lab_probabilities(stock_export), atol=1e-5, rtol=0)
    assert set(read_json(stock_export / "check.json")["loaders"]) == {"transformers"}
    assert "trust_remote_code" not in (stock_export / "README.md").read_text()


def test_a_job_keeps_a_seeded_sample_of_its_test_split(pooled_export: Path):
    rows = split_sample([f"t{i}" for i in range(300)], ["a"] * 300, seed=7)["rows"]
    assert len(rows) == TEST_SAMPLE_ROWS and rows == sorted(rows) and len(set(rows)) == TEST_SAMPLE_ROWS
    assert rows == split_sample([f"t{i}" for i in range(300)], ["a"] * 300, seed=7)["rows"]
    assert rows != split_sample([f"t{i}" for i in range(300)], ["a"] * 300, seed=8)["rows"]
    assert split_sample(["x", "y"], ["a", "b"], seed=7) == {
        "seed": 7,
        "rows": [0, 1],
        "texts": ["x", "y"],
        "labels": ["a", "b"],
    }


def test_an_export_needs_only_the_job_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The data dir gone and LORA_LAB_DATA_DIR unset: the export checks its loaders on the job's test
    sample, and its card says the whole-split ONNX check did not run."""
    job, data = csv_job(tmp_path)
    sample, test_rows = JobDir(job).test_sample(), JobDir(job).metrics()["data/test_rows"]
    assert sample is not None and len(sample["texts"]) == len(sample["labels"]) == test_rows  # < 128: all of them
    shutil.rmtree(data)
    monkeypatch.delenv("LORA_LAB_DATA_DIR", raising=False)
    export = export_job(job, tmp_path / "out", onnx=True)
    check = read_json(tmp_path / "out" / "check.json")
    assert check["passed"] and check["rows"] == test_rows and check["texts_from"].startswith("the job's test sample")
    assert export.onnx_check["agreement"] is None and export.onnx_check["rows"] == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"On the job's test sample: {test_rows} rows, seed 42" in card
    assert "onnx, whole test split: not run (the data dir was not there at export time)" in card


def test_a_job_without_its_sample_or_its_data_is_refused_naming_both(tmp_path: Path):
    job, data = csv_job(tmp_path)
    JobDir(job).test_sample_path.unlink()  # as a job from before test_sample.json
    shutil.rmtree(data)
    with pytest.raises(ConfigError, match=r"no test_sample\.json .* cannot be read here\. Point LORA_LAB_DATA_DIR"):
        export_job(job, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_loader_check_writes_nothing_unless_kept_and_the_server_refuses_a_kept_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    job = finished_job(tmp_path / "job", "regime=lora")
    monkeypatch.setattr(parity, "TOLERANCE", -1.0)  # no difference can pass
    with pytest.raises(ConfigError, match=r"(?s)transformers_remote_code: max \|difference\| .* keep_failed=true"):
        export_job(job, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    export_job(job, tmp_path / "kept", keep_failed=True)
    assert read_json(tmp_path / "kept" / "check.json")["passed"] is False
    with pytest.raises(ConfigError, match=r"records a failed check \(sentence_transformers, transformers_remote_code"):
        resolve_source(tmp_path / "kept")
