"""What each model answers, on /metrics and the page: how a team sees a model drift.

Per adapter:
- `lora_lab_predicted_labels_total{adapter,label}`: texts answered, by top label;
- `lora_lab_top1_probability{adapter}`: a histogram of the top label's probability (a model that
  grows unsure of live texts shifts it left before its accuracy can be measured);
- `lora_lab_texts_longer_than_max_length_share{adapter}`: of the texts scored, those longer than the
  model reads whole (cut, or read in windows): live texts longer than training's;
- `lora_lab_label_drift{adapter}`: the total variation distance, 1/2 sum_l |live_l - train_l|, between
  the top-label shares of the last DRIFT_WINDOW texts and the training split's label shares
  (labels.json's train_counts). 0: the same mix; 1: no label in common. Reported from MIN_DRIFT_TEXTS
  texts on: over fewer, a share is too noisy to read (one text of ten moves it 10 points). A model
  whose job predates train_counts has no reference and no gauge.

The window is 1,000 texts: one text moves a share by at most 0.1%, and a label at 5% of traffic
has about 50 texts in it (a binomial standard error of 0.7 points on its share).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

DRIFT_WINDOW = 1000
MIN_DRIFT_TEXTS = 100
TOP1_BUCKETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


@dataclass
class Window:
    """The top labels of an adapter's last DRIFT_WINDOW texts, with their counts kept in step."""

    labels: deque = field(default_factory=lambda: deque(maxlen=DRIFT_WINDOW))
    counts: Counter = field(default_factory=Counter)
    top1_sum: float = 0.0
    answered: int = 0

    def add(self, label: str, top1: float) -> None:
        if len(self.labels) == self.labels.maxlen:
            self.counts[self.labels[0]] -= 1  # the deque drops it on append
        self.labels.append(label)
        self.counts[label] += 1
        self.top1_sum += top1
        self.answered += 1

    def shares(self) -> dict[str, float]:
        n = len(self.labels)
        return {label: c / n for label, c in self.counts.items() if c} if n else {}

    def drift(self, train_counts: dict[str, int] | None) -> float | None:
        """drift() of this window's shares, or None: no reference, or fewer than MIN_DRIFT_TEXTS texts."""
        if not train_counts or len(self.labels) < MIN_DRIFT_TEXTS:
            return None
        return drift(self.shares(), train_counts)


def drift(live: dict[str, float], train_counts: dict[str, int]) -> float:
    """Total variation distance between live top-label shares and the training split's label shares."""
    total = sum(train_counts.values())
    train = {label: c / total for label, c in train_counts.items()} if total else {}
    return 0.5 * sum(abs(live.get(label, 0.0) - train.get(label, 0.0)) for label in set(live) | set(train))


class Quality:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.windows: dict[str, Window] = {}
        self._children: dict[tuple, Any] = {}
        self.predicted = PromCounter(
            "lora_lab_predicted_labels", "texts answered, by top label", ["adapter", "label"], registry=registry
        )
        self.top1 = Histogram(
            "lora_lab_top1_probability",
            "the top label's probability",
            ["adapter"],
            buckets=TOP1_BUCKETS,
            registry=registry,
        )
        self.long_share = Gauge(
            "lora_lab_texts_longer_than_max_length_share",
            "share of the texts scored that were longer than the model reads whole",
            ["adapter"],
            registry=registry,
        )
        self.drift = Gauge(
            "lora_lab_label_drift",
            f"total variation distance: top labels of the last {DRIFT_WINDOW} texts vs the training split",
            ["adapter"],
            registry=registry,
        )

    def observe(self, adapter: str, labels: list[str], top1: list[float]) -> None:
        """One request's answers, on the event loop: O(texts), no model work. The drift gauge is set when
        /metrics is scraped (set_drifts): its O(labels) sums need not run per request."""
        window = self.windows.setdefault(adapter, Window())
        top1_child = self._child(self.top1, adapter)
        for label, p in zip(labels, top1):
            window.add(label, p)
            self._child(self.predicted, adapter, label).inc()
            top1_child.observe(p)

    def _child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(*labels), looked up once (prometheus_client takes a lock and builds a key per call)."""
        key = (id(metric), *labels)
        if (child := self._children.get(key)) is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def set_drifts(self, train_counts: dict[str, dict[str, int] | None]) -> None:
        """Each adapter's drift gauge, from its window and its training split's counts (at scrape time)."""
        for adapter, counts in train_counts.items():
            window = self.windows.get(adapter)
            if window is not None and (value := window.drift(counts)) is not None:
                self.drift.labels(adapter).set(value)

    def set_long_shares(self, scored: dict[str, int], long: dict[str, int]) -> None:
        for adapter, n in scored.items():
            if n:
                self.long_share.labels(adapter).set(long.get(adapter, 0) / n)

    def summary(self, adapter: str, train_counts: dict[str, int] | None, scored: int, long: int) -> dict[str, Any]:
        """The page's view of one adapter (GET /v1/adapters' `telemetry`)."""
        window = self.windows.get(adapter, Window())
        shares = window.shares()
        return {
            "texts": window.answered,
            "window": len(window.labels),
            "label_shares": dict(sorted(shares.items(), key=lambda item: -item[1])),
            "mean_top1": window.top1_sum / window.answered if window.answered else None,
            "long_share": long / scored if scored else None,
            "drift": window.drift(train_counts),
            "has_reference": bool(train_counts),
        }

    def forget(self, adapter: str) -> None:
        """An unloaded (or replaced) model starts a new window."""
        self.windows.pop(adapter, None)
