"""Full fine-tune: every weight trains. Its "adapter" is the whole model (merged/ only)."""

from __future__ import annotations

from lora_lab.models.classifier import Classifier
from lora_lab.regimes.base import Regime


class FullFineTune(Regime):
    has_adapter = False

    def apply(self, classifier: Classifier) -> None:
        classifier.requires_grad_(True)
