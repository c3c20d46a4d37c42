"""An export loaded by the ecosystem's own libraries in an environment without lora_lab: Optimum's
ORTModelForSequenceClassification and its pipeline, transformers' pipeline (stock head, and remote
code for a pooled head) and sentence-transformers, from PyPI, offline.

They run in .venv-loaders/ (`make install-loaders`; requirements-loaders.txt): optimum-onnx needs
transformers < 4.58, lora_lab runs on 5. scripts/check_export_loaders.py prints what each loader
answers; each is compared with lora_lab's logits (embeddings) on the same texts, within 1e-4, on a
tiny random backbone of each head kind and on the embedded MiniLM-L6."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.core.global_hydra import GlobalHydra
from transformers import AutoTokenizer

from lora_lab.artifacts import read_json
from lora_lab.export.bundle import export_job
from lora_lab.export.parity import encode
from lora_lab.models.classifier import PooledClassifier, load_classifier
from lora_lab.models.predictor import Predictor
from lora_lab.train import train
from tests.helpers import compose_train, finished_job, require_or_skip, save_hydra_config

ROOT = Path(__file__).resolve().parents[2]
LOADERS_PYTHON = ROOT / ".venv-loaders" / "bin" / "python"
TEXTS = [
    "we need 40 more units by friday, the line is down",
    "same order as last month please, same delivery address",
    "can you make it in blue with our logo on the lid",
]


def loaders_answer(export: Path, tmp_path: Path) -> dict:
    require_or_skip(LOADERS_PYTHON.exists(), ".venv-loaders/ is missing: run `make install-loaders`")
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(TEXTS))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}  # nothing of lora_lab on its path
    done = subprocess.run(
        [str(LOADERS_PYTHON), str(ROOT / "scripts" / "check_export_loaders.py"), str(export), str(texts)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not the repo: `import lora_lab` must fail there
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def lora_lab_answers(export: Path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The merged classifier's logits (and unit embeddings) on TEXTS, and the Predictor's labels."""
    classifier = load_classifier(export / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(export / "merged"))
    (batch,) = encode(tokenizer, TEXTS, tokenizer.model_max_length)
    with torch.inference_mode():
        logits = classifier(batch["input_ids"], batch["attention_mask"]).numpy()
        embeddings = (
            F.normalize(classifier.embed(batch["input_ids"], batch["attention_mask"]), dim=-1).numpy()
            if isinstance(classifier, PooledClassifier)
            else None
        )
    return logits, embeddings, Predictor(export / "merged").predict(TEXTS)


def check_every_loader(export: Path, tmp_path: Path, remote_code: bool) -> dict:
    answers = loaders_answer(export, tmp_path)
    assert answers["versions"]["transformers"].startswith("4.57") and "optimum" in answers["versions"]
    logits, embeddings, labels = lora_lab_answers(export)
    probabilities = torch.tensor(logits).softmax(-1).numpy()
    id2label = read_json(export / "labels.json")["id2label"]
    for loader in ("transformers", "optimum"):
        np.testing.assert_allclose(np.array(answers[loader]["logits"]), logits, atol=1e-4, err_msg=loader)
        in_label_order = [
            [answer[id2label[str(i)]] for i in range(len(id2label))] for answer in answers[loader]["pipeline"]
        ]
        np.testing.assert_allclose(np.array(in_label_order), probabilities, atol=1e-4, err_msg=loader)
        assert [max(answer, key=answer.get) for answer in answers[loader]["pipeline"]] == labels, loader
    assert answers["transformers"]["trust_remote_code"] is remote_code
    if embeddings is None:
        assert "sentence_transformers" not in answers
    else:
        np.testing.assert_allclose(np.array(answers["sentence_transformers"]["embeddings"]), embeddings, atol=1e-4)
    return answers


@pytest.mark.parametrize("head", ["pooled", "stock"])
def test_optimum_transformers_and_sentence_transformers_answer_as_lora_lab_on_a_tiny_model(head: str, tmp_path: Path):
    overrides = ["regime=lora"] if head == "pooled" else ["regime=full", "backbone.pooling=cls"]
    job = finished_job(tmp_path / "job", *overrides)
    export_job(job, tmp_path / "export", onnx=True)
    check_every_loader(tmp_path / "export", tmp_path, remote_code=head == "pooled")


def test_the_loaders_answer_as_lora_lab_on_the_embedded_minilm(tmp_path: Path):
    """MiniLM-L6 (mean pooling, LoRA merged), a short job: the loaders' figures on a real model."""
    cfg = compose_train(
        tmp_path / "job",
        [
            "dataset.n_per_class=20",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "logger=none",
            "stack=none",
        ],
    )
    save_hydra_config(cfg, tmp_path / "job")
    train(cfg)
    GlobalHydra.instance().clear()
    export_job(tmp_path / "job", tmp_path / "export", onnx=True)
    check = read_json(tmp_path / "export" / "check.json")
    assert check["passed"] and set(check["loaders"]) == {
        "transformers_remote_code",
        "onnxruntime",
        "sentence_transformers",
    }
    check_every_loader(tmp_path / "export", tmp_path, remote_code=True)
