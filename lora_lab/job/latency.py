"""What serving one text costs: `latency/p50_ms` and `latency/p95_ms`, measured in every job.

The batched `latency/test_ms_per_example` is the test loop's time over its rows: what a batch job
pays per text. A service answering one request at a time pays a whole forward per text, padded to
nothing, plus the tokenizer and (for a stack) the TF-IDF part. This module measures that: the
job's shipped `merged/` through the Predictor, one test text at a time, in the precision the
server picks with `precision=auto` (bf16 autocast where the CPU has native bf16, else fp32), and
again with dynamic int8 Linear layers (`quantize=int8`). A job without merged/ (regime=tfidf, a
model with no merged form) is timed as it is in memory, tokenizer included, with no int8 figure.

Bounded so that every job can afford it: at most SINGLE_TEXTS texts and LIMIT_S seconds per
precision, whichever comes first. MiniLM on 2 cores answers a 64-token text in about 10 ms, so 64
texts take about a second; a 512-token review about 0.1 s, so the time limit cuts the sample at
about 80 texts. The texts are a seeded sample of the test split, so reruns time the same texts.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lora_lab.config.hardware import cpu_has_native_bf16
from lora_lab.data.batching import PadCollator, average_windows, flatten_windows
from lora_lab.data.truncation import Truncation
from lora_lab.models.classifier import Classifier
from lora_lab.models.predictor import Predictor

log = logging.getLogger(__name__)

SINGLE_TEXTS = 64  # at most this many texts, one request each, per precision
LIMIT_S = 10.0  # and at most this many seconds of them
WARMUP = 3  # untimed calls first: the first forwards allocate and (traced) optimise the graph


def sample_texts(texts: Sequence[str], seed: int, n: int = SINGLE_TEXTS) -> list[str]:
    """A seeded sample of `texts`, at most n, for the timing (the same texts for the same seed)."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [texts[i] for i in order[:n]]


def in_memory(classifier: Classifier, tokenizer: Any, cut: Truncation) -> Callable[[str], int]:
    """One text -> its label id with a trained classifier in memory, cut as the job cut its texts
    (a chunked job's windows averaged, as the Predictor does)."""
    collate = PadCollator(tokenizer.pad_token_id)
    classifier.eval()

    @torch.inference_mode()
    def predict_one(text: str) -> int:
        windows, owner = flatten_windows(cut.encode(tokenizer, [text])[0])
        batch = collate([(window, 0) for window in windows])
        logits = classifier(batch["input_ids"], batch["attention_mask"]).float()
        return int(average_windows(logits, owner, 1).argmax(-1))

    return predict_one


def time_one_at_a_time(predict_one: Callable[[str], object], texts: Sequence[str], bf16: bool) -> list[float]:
    """Milliseconds per call, one text each, until the texts or LIMIT_S run out."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    timings: list[float] = []
    with autocast:
        for text in texts[:WARMUP]:
            predict_one(text)
        stop = time.perf_counter() + LIMIT_S
        for text in texts:
            start = time.perf_counter()
            predict_one(text)
            timings.append(1000 * (time.perf_counter() - start))
            if start > stop:
                break
    return timings


def percentiles(prefix: str, timings: Sequence[float]) -> dict[str, float]:
    """`<prefix>p50_ms` and `<prefix>p95_ms` of the timings (linear interpolation, numpy's default)."""
    p50, p95 = np.percentile(timings, [50, 95])
    return {f"{prefix}p50_ms": float(p50), f"{prefix}p95_ms": float(p95)}


def single_text_latency(
    run_dir: Path, classifier: Classifier, tokenizer: Any, cut: Truncation, texts: Sequence[str], seed: int
) -> dict[str, object]:
    """latency/* of a finished job: p50/p95 one text at a time in the server's precision, and
    `latency/int8_p50_ms`/`int8_p95_ms` with quantize=int8 (merged/ only). No texts: {}."""
    texts = sample_texts(texts, seed)
    if not texts:
        return {}
    bf16 = cpu_has_native_bf16()
    merged = run_dir / "merged"
    # A traced graph is fp32 by construction; under bf16 autocast the eager model runs, as the server's does.
    answer = Predictor(merged, trace=not bf16).predict_one if merged.is_dir() else in_memory(classifier, tokenizer, cut)
    timings = time_one_at_a_time(answer, texts, bf16)
    metrics: dict[str, object] = {
        **percentiles("latency/", timings),
        "latency/precision": "bf16" if bf16 else "fp32",
        "latency/single_texts": len(timings),
    }
    if merged.is_dir():
        int8 = Predictor(merged, quantize="int8").predict_one
        metrics.update(percentiles("latency/int8_", time_one_at_a_time(int8, texts, bf16=False)))
    return metrics
