"""onnx=true: the merged classifier as onnx/model.onnx, checked against PyTorch on the job's test split.

Exported by torch's TorchScript-based exporter (dynamo=False): the torch.export-based default needs
onnxscript, which lora_lab does not depend on, and a trace covers these classifiers' forward.
A trace records the branches one call takes, so the example batch is padded: HF skips the
attention-mask path for an all-ones mask (the reasoning of Predictor's trace_and_freeze). The
check then runs both on every test row, so a wrong trace shows up as disagreement, not later.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from transformers import PreTrainedTokenizerBase

from lora_lab.artifacts import write_json
from lora_lab.data.batching import average_windows
from lora_lab.data.datamodule import TextClassificationDataModule
from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier

INPUTS = ("input_ids", "attention_mask")


def add_onnx(
    out_dir: Path,
    classifier: Classifier,
    tokenizer: PreTrainedTokenizerBase,
    datamodule: TextClassificationDataModule | None,
    tolerance: float,
    opset: int,
) -> dict[str, Any]:
    """Write out_dir/model.onnx and out_dir/check.json; a ConfigError if ONNX disagrees with PyTorch on
    more than `tolerance` of the test rows (the caller's atomic dir then leaves nothing behind).
    datamodule None: the test split cannot be read here, and the export's parity check on the job's
    test sample (parity.py) is the only comparison; check.json says so."""
    out_dir.mkdir()
    export_onnx(classifier, tokenizer, out_dir / "model.onnx", opset)
    compared = (
        compare_on_test(out_dir / "model.onnx", classifier, datamodule)
        if datamodule is not None
        else {"rows": 0, "agreement": None, "not_run": "no readable test split (data dir): see ../check.json"}
    )
    check = {
        **compared,
        "tolerance": tolerance,
        "opset": opset,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if check["agreement"] is not None and 1 - check["agreement"] > tolerance:
        raise ConfigError(
            f"onnx=true: the ONNX model predicts differently from PyTorch on {check['disagreements']} "
            f"of {check['rows']} test rows ({1 - check['agreement']:.2%}, more than onnx_tolerance={tolerance}); "
            f"accuracy onnx {check['accuracy_onnx']:.4f} vs pytorch {check['accuracy_pytorch']:.4f}. "
            f"Nothing was written. Try another onnx_opset (now {opset}), export without onnx=true, "
            "or raise onnx_tolerance if that gap is acceptable."
        )
    write_json(out_dir / "check.json", check)
    return check


def export_onnx(classifier: Classifier, tokenizer: PreTrainedTokenizerBase, path: Path, opset: int) -> None:
    """forward(input_ids, attention_mask) -> logits, with dynamic batch and sequence axes."""
    texts = ["a short text", "a longer text, so that the first row of this example batch is padded"]
    example = tokenizer(texts, padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS} | {"logits": {0: "batch"}}
    classifier.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter's deprecation notice and the tracer's notes on the branches described above.
        warnings.simplefilter("ignore", (DeprecationWarning, torch.jit.TracerWarning, UserWarning))
        torch.onnx.export(
            classifier,
            (example["input_ids"], example["attention_mask"]),
            str(path),
            input_names=list(INPUTS),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    classifier.eval()  # export restores the mode it found; the comparison needs eval (no dropout)


def compare_on_test(path: Path, classifier: Classifier, datamodule: TextClassificationDataModule) -> dict[str, Any]:
    """Argmax agreement, each side's accuracy and the largest logit gap over the test split."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    datamodule.setup("test")
    torch_logits, onnx_logits, labels = [], [], []
    with torch.inference_mode():
        for batch in datamodule.test_dataloader():
            pt_rows = classifier(batch["input_ids"], batch["attention_mask"])
            ox_rows = torch.from_numpy(session.run(["logits"], {name: batch[name].numpy() for name in INPUTS})[0])
            if "text_index" in batch:  # data.long_text=chunk: a text's logits are its windows' mean, on both sides
                n = batch["labels"].numel()
                pt_rows, ox_rows = (average_windows(rows, batch["text_index"], n) for rows in (pt_rows, ox_rows))
            torch_logits.append(pt_rows.numpy())
            onnx_logits.append(ox_rows.numpy())
            labels.append(batch["labels"].numpy())
    pt, ox, y = np.concatenate(torch_logits), np.concatenate(onnx_logits), np.concatenate(labels)
    same = pt.argmax(1) == ox.argmax(1)
    return {
        "rows": len(y),
        "agreement": float(same.mean()),
        "disagreements": int((~same).sum()),
        "accuracy_pytorch": float((pt.argmax(1) == y).mean()),
        "accuracy_onnx": float((ox.argmax(1) == y).mean()),
        "max_abs_logit_diff": float(np.abs(pt - ox).max()),
    }
