"""Classification metrics (torchmetrics), named `split/name` as everywhere in lora_lab."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def summary_metrics(num_labels: int, split: str) -> MetricCollection:
    """Accuracy (micro: share of rows right) and the macro averages that weigh rare classes fairly."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_labels, average="micro"),
            "f1_macro": MulticlassF1Score(num_labels, average="macro"),
            "precision_macro": MulticlassPrecision(num_labels, average="macro"),
            "recall_macro": MulticlassRecall(num_labels, average="macro"),
        },
        prefix=f"{split}/",
    )


def detail_metrics(num_labels: int) -> MetricCollection:
    """Per-class F1 and the confusion matrix (rows: true label, columns: predicted)."""
    return MetricCollection(
        {
            "f1_per_class": MulticlassF1Score(num_labels, average=None),
            "confusion_matrix": MulticlassConfusionMatrix(num_labels),
        }
    )
