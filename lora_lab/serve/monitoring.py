"""GET /metrics: Prometheus counters and histograms per adapter (prometheus-client, its own registry):
traffic here, what the models answer in quality.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lora_lab.serve.quality import Quality

# Milliseconds to seconds: micro-batched single texts take a few ms; a queue under load, hundreds.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per app: two servers in one process (tests) do not mix
        self.requests = Counter(
            "lora_lab_requests", "requests answered", ["adapter", "endpoint"], registry=self.registry
        )
        self.errors = Counter(
            "lora_lab_errors", "requests that failed", ["adapter", "endpoint", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "lora_lab_request_latency_seconds",
            "time from arrival to answer",
            ["adapter", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "lora_lab_batch_texts",
            "texts of an adapter in one model batch",
            ["adapter"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge("lora_lab_queue_texts", "texts waiting for a batch", ["adapter"], registry=self.registry)
        self.quality = Quality(self.registry)

    @contextmanager
    def track(self, adapter: str, endpoint: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        except HTTPException as err:
            self.errors.labels(adapter, endpoint, str(err.status_code)).inc()
            raise
        except Exception:
            self.errors.labels(adapter, endpoint, "500").inc()
            raise
        self.requests.labels(adapter, endpoint).inc()
        self.latency.labels(adapter, endpoint).observe(time.perf_counter() - start)

    def observe_batch(self, adapters: list[str], texts_per_request: list[int], seconds: float) -> None:
        counts: dict[str, int] = {}
        for name, n in zip(adapters, texts_per_request):
            counts[name] = counts.get(name, 0) + n
        for name, n in counts.items():
            self.batch_size.labels(name).observe(n)

    def render(
        self,
        waiting: dict[str, int],
        scored: dict[str, int] | None = None,
        long: dict[str, int] | None = None,
        train_counts: dict[str, dict[str, int] | None] | None = None,
    ) -> tuple[bytes, str]:
        """The text format, with the gauges set as scraped: the queue from `waiting` (texts per adapter),
        each adapter's share of long texts from the engine's counts, its drift from its training counts."""
        for name, n in waiting.items():
            self.queue.labels(name).set(n)
        self.quality.set_long_shares(scored or {}, long or {})
        self.quality.set_drifts(train_counts or {})
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
