"""Few-shot on frozen embeddings: embed the training rows (those shots_per_class kept) with the
frozen backbone, then fit the linear head in closed form (`prototype`: nearest class centroid)
or by scikit-learn (`logistic_regression`). No gradient epochs; merged/ is a plain pooled
classifier and adapter/ the head alone, as for head-only training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier
from lora_lab.models.embedding import embed_split, require_embeddings, write_head
from lora_lab.models.fitted_heads import PROTOTYPE_METRICS, logistic_regression_head, prototype_head
from lora_lab.regimes.head import HeadOnly

if TYPE_CHECKING:
    from lora_lab.data.datamodule import TextClassificationDataModule

METHODS = ("prototype", "logistic_regression")


class FewShot(HeadOnly):
    trains_by_gradient = False

    def __init__(
        self,
        name: str,
        learning_rate: float,
        method: str = "logistic_regression",
        metric: str = "cosine",
        scale: float = 20.0,
        C: float = 1.0,
        max_iter: int = 1000,
        seed: int = 0,
        head_learning_rate: float | None = None,
        normalize: bool = True,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        if method not in METHODS:
            raise ConfigError(f"regime.method={method!r}: choose one of {METHODS}")
        if metric not in PROTOTYPE_METRICS:
            raise ConfigError(f"regime.metric={metric!r}: choose one of {PROTOTYPE_METRICS}")
        self.method, self.metric, self.scale = method, metric, scale
        self.C, self.max_iter, self.seed, self.normalize = C, max_iter, seed, normalize

    def apply(self, classifier: Classifier) -> None:
        require_embeddings(classifier, self.name)
        classifier.normalize = self.normalize  # the head is fitted on, and reads, unit-length embeddings
        super().apply(classifier)  # frozen body; the head is what the labelled rows fit

    def fit_head(self, x: torch.Tensor, y: torch.Tensor, num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the head for embeddings x with label ids y."""
        if self.method == "prototype":
            return prototype_head(x, y, num_labels, self.metric, self.scale)
        return logistic_regression_head(x, y, num_labels, self.C, self.max_iter, self.seed)

    def prepare(self, classifier: Classifier, datamodule: TextClassificationDataModule) -> None:
        x, y = embed_split(classifier, datamodule, "train")
        write_head(classifier, *self.fit_head(x, y, len(classifier.id2label)))
