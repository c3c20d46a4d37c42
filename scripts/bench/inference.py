"""Inference with a lora_lab merged/ model in a fresh process: batch throughput and single-text latency.

Through lora_lab.models.predictor.Predictor with its defaults (traced, frozen graph), what a user
ships (spec `quantize`: none | int8). Batch: every test text -> predicted labels, end to end
(tokenization, length-sorted batches of `batch_size` padded to their longest row). Single:
`latency_texts` seeded random test texts one at a time, tokenization included; p50 and p90 ms.
Both with the process's default torch threads.

    python -m bench.inference <run_dir>    (spec.json there: merged_dir, rows_path, quantize, ...)
"""

from __future__ import annotations

import random
import statistics
import time

import torch

from bench.worker import peak_rss_mb, read_rows, read_spec, write_result
from lora_lab.models.predictor import Predictor

WARMUP_TEXTS = 10


def main() -> None:
    run_dir, spec = read_spec()
    rows = read_rows(spec["rows_path"])
    texts, labels = rows["test"]["texts"], rows["test"]["labels"]
    start = time.perf_counter()
    predictor = Predictor(
        spec["merged_dir"], quantize=spec["quantize"], batch_size=spec["batch_size"], max_length=rows["max_length"]
    )
    load_s = time.perf_counter() - start
    for text in texts[:WARMUP_TEXTS]:
        predictor.predict_one(text)
    predictor.predict(texts[: spec["batch_size"]])

    start = time.perf_counter()
    preds = predictor.predict(texts)
    batch_s = time.perf_counter() - start

    sample = random.Random(spec["seed"]).sample(texts, min(spec["latency_texts"], len(texts)))
    latencies_ms = []
    for text in sample:
        t0 = time.perf_counter()
        predictor.predict_one(text)
        latencies_ms.append(1000 * (time.perf_counter() - t0))

    deciles = statistics.quantiles(latencies_ms, n=10)
    write_result(
        run_dir,
        {
            "merged_dir": spec["merged_dir"],
            "quantize": spec["quantize"],
            "load_s": load_s,  # load + quantize + trace + check
            "test_rows": len(texts),
            "batch_size": spec["batch_size"],
            "batch_examples_per_s": len(texts) / batch_s,
            "batch_test_acc": sum(p == y for p, y in zip(preds, labels)) / len(texts),
            "latency_texts": len(sample),
            "latency_p50_ms": statistics.median(latencies_ms),
            "latency_p90_ms": deciles[8],
            "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": peak_rss_mb(),
        },
    )


if __name__ == "__main__":
    main()
