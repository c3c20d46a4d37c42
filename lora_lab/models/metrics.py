"""Classification metrics (torchmetrics), named `split/name` as everywhere in lora_lab."""

from __future__ import annotations

import torch
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


def scores_of_probabilities(probs: torch.Tensor, labels: torch.Tensor, split: str) -> dict:
    """`split/acc`, the macro scores, `split/loss` (mean negative log-likelihood), per-class F1 and the
    confusion matrix of probability rows: what the test loop reports, for a model scored outside it
    (a stacked model's mix)."""
    num_labels = probs.shape[1]
    preds = probs.argmax(-1)
    summary, details = summary_metrics(num_labels, split), detail_metrics(num_labels)
    summary.update(preds, labels)
    details.update(preds, labels)
    return {
        **{k: float(v) for k, v in summary.compute().items()},
        f"{split}/loss": log_loss(probs, labels),
        **{k: v.tolist() for k, v in details.compute().items()},
    }


def log_loss(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true labels under probability rows (clamped away from log 0)."""
    return float(-probs.clamp(min=1e-12).log().gather(1, labels[:, None]).mean())
