"""check.json: does each loader of the export answer as lora_lab does, on the job's own test texts?

Each loader reads the export's files with its library (transformers, from merged/ as a user would,
with trust_remote_code where merged/ needs it; sentence-transformers from st/; onnxruntime from
onnx/, the session Optimum wraps) and is compared with the lora_lab classifier the export was made
from, on the same token ids: the texts cut at the head to the job's max_length, which is what a
loader's own `truncation=True` does with the tokenizer saved beside it.

Figures per loader: the largest absolute difference of logits (embeddings for sentence-transformers)
and the share of texts whose top label agrees. A loader passes within `tolerance` (1e-4: float32
kernels that sum in another order differ by about 1e-6 here). A library that is not installed is
recorded as skipped, not passed. The texts themselves stay out of the export (a published card
would publish them). Optimum itself needs transformers < 4.58, so CI checks it in an environment
of its own (scripts/check_export_loaders.py, tests/integration/test_export_loaders.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase

from lora_lab.export.ecosystem import needs_remote_code
from lora_lab.models.classifier import Classifier, PooledClassifier

TOLERANCE = 1e-4
BATCH = 16


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[dict[str, torch.Tensor]]:
    """The texts in padded batches, cut at the head as a loader's truncation=True cuts them."""
    return [
        dict(
            tokenizer(
                list(texts[i : i + BATCH]), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
        )
        for i in range(0, len(texts), BATCH)
    ]


def run(batches: list[dict[str, torch.Tensor]], forward: Callable[[dict[str, torch.Tensor]], Any]) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([np.asarray(forward(batch), dtype=np.float32) for batch in batches])


def compare(ours: np.ndarray, theirs: np.ndarray, tolerance: float, logits: bool = True) -> dict[str, Any]:
    """The largest difference; for logits also the share of rows whose top label agrees."""
    result: dict[str, Any] = {"max_abs_diff": float(np.abs(ours - theirs).max())}
    if logits:
        result["top1_agreement"] = float((ours.argmax(1) == theirs.argmax(1)).mean())
    return result | {"passed": result["max_abs_diff"] <= tolerance}


def check_loaders(
    out: Path,
    classifier: Classifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    texts_from: str,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Run every loader the export has on `texts`; the dict written as check.json (tolerance: TOLERANCE)."""
    tolerance = TOLERANCE if tolerance is None else tolerance
    classifier.eval()
    batches = encode(tokenizer, texts, max_length)
    ids = [{k: b[k] for k in ("input_ids", "attention_mask")} for b in batches]
    logits = run(ids, lambda b: classifier(b["input_ids"], b["attention_mask"]))
    loaders: dict[str, Any] = {}
    remote = needs_remote_code(classifier)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(out / "merged"), trust_remote_code=remote, dtype=torch.float32
    ).eval()
    name = "transformers_remote_code" if remote else "transformers"
    loaders[name] = compare(logits, run(batches, lambda b: model(**b).logits), tolerance)
    if (out / "onnx" / "model.onnx").is_file():
        import onnxruntime  # the serve extra: only when the export has onnx/

        session = onnxruntime.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
        loaders["onnxruntime"] = compare(
            logits, run(ids, lambda b: session.run(["logits"], {k: v.numpy() for k, v in b.items()})[0]), tolerance
        )
    if isinstance(classifier, PooledClassifier) and (out / "st").is_dir():
        embeddings = run(ids, lambda b: F.normalize(classifier.embed(b["input_ids"], b["attention_mask"]), dim=-1))
        if importlib.util.find_spec("sentence_transformers") is None:
            loaders["sentence_transformers"] = {"skipped": "sentence-transformers is not installed"}
        else:
            from sentence_transformers import SentenceTransformer

            encoder = SentenceTransformer(str(out / "st"), device="cpu")
            theirs = encoder.encode(list(texts), batch_size=BATCH, convert_to_numpy=True, show_progress_bar=False)
            loaders["sentence_transformers"] = compare(embeddings, theirs, tolerance, logits=False)
    ran = [result for result in loaders.values() if "skipped" not in result]
    return {
        "tolerance": tolerance,
        "texts_from": texts_from,
        "rows": len(texts),
        "max_length": max_length,
        "loaders": loaders,
        "passed": all(result["passed"] for result in ran),
    }


def failed(check: dict[str, Any]) -> list[str]:
    """'<loader>: max |diff| <x>' for each loader outside the tolerance."""
    return [
        f"{name}: max |difference| {result['max_abs_diff']:.2e} > {check['tolerance']:.0e}"
        for name, result in check["loaders"].items()
        if not result.get("passed", True)
    ]
