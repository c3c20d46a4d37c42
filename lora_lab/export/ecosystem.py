"""An export's dirs as the ecosystem's loaders read them, with nothing of lora_lab installed:

    merged/  transformers: AutoModelForSequenceClassification / pipeline("text-classification").
             A stock head (backbone.pooling=cls) is HF's own class: no flag. A pooled head (mean or
             last) is not expressible by a stock class, so merged/ carries modeling_lora_lab.py and
             config.json's `auto_map` names it: `trust_remote_code=True` (remote_code/'s docstring).
    onnx/    Optimum: ORTModelForSequenceClassification.from_pretrained(<export>/onnx), and through it
             pipeline(..., model=ort_model, tokenizer=...): model.onnx, config.json with the labels,
             the tokenizer.
    st/      sentence-transformers (pooled heads only): SentenceTransformer(<export>/st), whose
             encode() gives the unit-length pooled embeddings the server's /v1/similar searches by.

Every dir's tokenizer cuts at the job's max_length (`model_max_length`), so a loader's own
`truncation=True` reads the first max_length tokens, as lora_lab's `data.truncation=head` does.
The files are copied and JSON rewritten; lora_lab's own readers (merged/'s lora_lab_classifier.json,
head.safetensors, truncation.json) are untouched, so lora_lab loads merged/ as before.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from lora_lab.artifacts import read_json, write_json
from lora_lab.models.classifier import Classifier, PooledClassifier

REMOTE_CODE = Path(__file__).parent / "remote_code" / "modeling_lora_lab.py"
REMOTE_CLASS = "modeling_lora_lab.LoraLabPooledForSequenceClassification"
MODEL_CONFIG = "config.json"
# sentence-transformers' pooling names (its 1_Pooling/config.json keys, read by every release since 2.0).
ST_POOLING = {"mean": "pooling_mode_mean_tokens", "last": "pooling_mode_lasttoken"}


def needs_remote_code(classifier: Classifier) -> bool:
    """A pooled head has no stock transformers class: merged/ needs trust_remote_code=True."""
    return isinstance(classifier, PooledClassifier)


def ready_merged(merged: Path, classifier: Classifier, tokenizer: PreTrainedTokenizerBase) -> None:
    """merged/ loadable by AutoModelForSequenceClassification; its config names the labels either way."""
    config = read_json(merged / MODEL_CONFIG)
    config["id2label"] = {str(i): label for i, label in classifier.id2label.items()}
    config["label2id"] = {label: i for i, label in classifier.id2label.items()}
    if needs_remote_code(classifier):
        shutil.copy2(REMOTE_CODE, merged / REMOTE_CODE.name)
        config["auto_map"] = {"AutoModelForSequenceClassification": REMOTE_CLASS}
        config["architectures"] = [REMOTE_CLASS.split(".")[1]]
        config["lora_lab"] = {"pooling": classifier.pooling, "normalize": classifier.normalize}
    write_json(merged / MODEL_CONFIG, config)
    tokenizer.save_pretrained(str(merged))


def ready_onnx(onnx_dir: Path, merged: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    """onnx/ as Optimum opens it: the labels' config.json (no auto_map: the graph is the whole model,
    head and pooling included) and the tokenizer beside model.onnx."""
    write_json(onnx_dir / MODEL_CONFIG, plain_config(merged))
    tokenizer.save_pretrained(str(onnx_dir))


def plain_config(merged: Path) -> dict[str, Any]:
    """merged/config.json without what only its remote code reads (auto_map, lora_lab's pooling)."""
    return {k: v for k, v in read_json(merged / MODEL_CONFIG).items() if k not in ("auto_map", "lora_lab")}


def write_st(st_dir: Path, merged: Path, classifier: PooledClassifier, tokenizer: PreTrainedTokenizerBase) -> None:
    """st/: the fine-tuned body, its pooling and a Normalize module (sentence-transformers' layout)."""
    st_dir.mkdir()
    shutil.copy2(merged / "model.safetensors", st_dir / "model.safetensors")
    write_json(st_dir / MODEL_CONFIG, plain_config(merged) | {"architectures": [type(classifier.transformer).__name__]})
    tokenizer.save_pretrained(str(st_dir))
    hidden = classifier.transformer.config.hidden_size
    pooling: dict[str, Any] = {"word_embedding_dimension": hidden} | {key: False for key in ST_POOLING.values()}
    pooling[ST_POOLING[classifier.pooling]] = True
    (st_dir / "1_Pooling").mkdir()
    write_json(st_dir / "1_Pooling" / "config.json", pooling)
    (st_dir / "2_Normalize").mkdir()  # /v1/similar compares unit vectors, whatever the head reads
    write_json(st_dir / "sentence_bert_config.json", {"max_seq_length": tokenizer.model_max_length})
    modules = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    write_json(
        st_dir / "modules.json",
        [
            {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
            for i, (path, kind) in enumerate(modules)
        ],
    )
