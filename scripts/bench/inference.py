"""Inference with a lora_lab merged/ model in a fresh process: batch throughput and single-text latency.

Batch: every test text, tokenized (timed), sorted by token length, in batches of `batch_size`
padded to their longest row: texts -> predicted labels, end to end. Single: `latency_texts`
seeded random test texts one at a time, tokenization included; p50 and p90 of the per-text ms.
Both under torch.inference_mode with the process's default torch threads.

    python -m bench.inference <run_dir>    (spec.json there: merged_dir, rows_path, ...)
"""

from __future__ import annotations

import random
import statistics
import time

import torch
from transformers import AutoTokenizer

from bench.worker import peak_rss_mb, read_rows, read_spec, write_result
from lora_lab.data.batching import PadCollator
from lora_lab.models.classifier import load_classifier

WARMUP_TEXTS = 10


def main() -> None:
    run_dir, spec = read_spec()
    rows = read_rows(spec["rows_path"])
    texts, labels, max_length = rows["test"]["texts"], rows["test"]["labels"], rows["max_length"]
    classifier = load_classifier(spec["merged_dir"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(spec["merged_dir"])
    collate = PadCollator(tokenizer.pad_token_id)

    def predict_one(text: str) -> int:
        enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        return int(classifier(enc["input_ids"], enc["attention_mask"]).argmax(-1))

    with torch.inference_mode():
        for text in texts[:WARMUP_TEXTS]:
            predict_one(text)
        start = time.perf_counter()
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        preds = [0] * len(ids)
        for first in range(0, len(order), spec["batch_size"]):
            rows = order[first : first + spec["batch_size"]]
            batch = collate([(ids[i], 0) for i in rows])
            for i, pred in zip(rows, classifier(batch["input_ids"], batch["attention_mask"]).argmax(-1).tolist()):
                preds[i] = pred
        batch_s = time.perf_counter() - start

        sample = random.Random(spec["seed"]).sample(texts, min(spec["latency_texts"], len(texts)))
        latencies_ms = []
        for text in sample:
            t0 = time.perf_counter()
            predict_one(text)
            latencies_ms.append(1000 * (time.perf_counter() - t0))

    id2label = classifier.id2label
    correct = sum(id2label[p] == y for p, y in zip(preds, labels))
    deciles = statistics.quantiles(latencies_ms, n=10)
    write_result(
        run_dir,
        {
            "merged_dir": spec["merged_dir"],
            "test_rows": len(texts),
            "batch_size": spec["batch_size"],
            "batch_examples_per_s": len(texts) / batch_s,
            "batch_test_acc": correct / len(texts),
            "latency_texts": len(sample),
            "latency_p50_ms": statistics.median(latencies_ms),
            "latency_p90_ms": deciles[8],
            "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": peak_rss_mb(),
        },
    )


if __name__ == "__main__":
    main()
