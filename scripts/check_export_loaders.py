"""Load a lora_lab export with the ecosystem's own libraries, importing nothing of lora_lab.

    python scripts/check_export_loaders.py <export dir> <texts.json> [--max-length N]

texts.json: a JSON list of texts. Prints one JSON object: for each loader importable in *this*
environment, its logits (sentence-transformers: embeddings) and its pipeline's answers (label and
probability of every label), on the texts cut at the head to --max-length tokens (default: the
tokenizer's own model_max_length, which an export sets to the job's length).

It exists because Optimum's ONNX Runtime classes (optimum-onnx 0.1) need transformers < 4.58 while
lora_lab runs on transformers 5: `make install-loaders` builds .venv-loaders/ for it, and
tests/integration/test_export_loaders.py compares what this prints with lora_lab's own answers.

- `optimum`: ORTModelForSequenceClassification.from_pretrained(<export>/onnx), and
  transformers.pipeline("text-classification", model=<it>, tokenizer=<export>/onnx's tokenizer);
- `transformers`: pipeline("text-classification", model=<export>/merged) with trust_remote_code=True
  when merged/config.json has an auto_map (a pooled head), as the export's card says;
- `sentence_transformers`: SentenceTransformer(<export>/st).encode(texts), where st/ exists.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
from pathlib import Path


def pipeline_answers(classify, texts: list[str], max_length: int) -> list[dict[str, float]]:
    """Each text's {label: probability}, every label."""
    answers = classify(texts, truncation=True, max_length=max_length, top_k=None)
    return [{row["label"]: row["score"] for row in answer} for answer in answers]


def logits_of(model, tokenizer, texts: list[str], max_length: int) -> list[list[float]]:
    import torch

    batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.float().tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("texts", type=Path)
    parser.add_argument("--max-length", type=int, default=None)
    args = parser.parse_args()
    texts = json.loads(args.texts.read_text())
    with contextlib.redirect_stdout(sys.stderr):  # the libraries' own prints: stdout is the JSON alone
        out = answers(args.export, texts, args.max_length)
    json.dump(out, sys.stdout)


def answers(export: Path, texts: list[str], max_length: int | None) -> dict:
    """Each loader's logits (embeddings) and pipeline answers on texts."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    from transformers import __version__ as transformers_version

    out: dict = {"versions": {"transformers": transformers_version}}
    merged = export / "merged"
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    max_length = max_length or tokenizer.model_max_length
    remote = "auto_map" in json.loads((merged / "config.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(str(merged), trust_remote_code=remote).eval()
    out["transformers"] = {
        "trust_remote_code": remote,
        "logits": logits_of(model, tokenizer, texts, max_length),
        "pipeline": pipeline_answers(
            pipeline("text-classification", model=str(merged), trust_remote_code=remote), texts, max_length
        ),
    }
    onnx_dir = export / "onnx"
    if importlib.util.find_spec("optimum") is not None and (onnx_dir / "model.onnx").is_file():
        import optimum.version
        from optimum.onnxruntime import ORTModelForSequenceClassification

        ort_model = ORTModelForSequenceClassification.from_pretrained(str(onnx_dir))
        ort_tokenizer = AutoTokenizer.from_pretrained(str(onnx_dir))
        out["versions"]["optimum"] = optimum.version.__version__
        out["optimum"] = {
            "logits": logits_of(ort_model, ort_tokenizer, texts, max_length),
            "pipeline": pipeline_answers(
                pipeline("text-classification", model=ort_model, tokenizer=ort_tokenizer), texts, max_length
            ),
        }
    st_dir = export / "st"
    if importlib.util.find_spec("sentence_transformers") is not None and st_dir.is_dir():
        import sentence_transformers
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(str(st_dir), device="cpu")
        out["versions"]["sentence_transformers"] = sentence_transformers.__version__
        out["sentence_transformers"] = {"embeddings": encoder.encode(texts, convert_to_numpy=True).tolist()}
    return out


if __name__ == "__main__":
    main()
