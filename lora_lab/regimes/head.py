"""Head only: the backbone stays frozen, only the classification head trains."""

from __future__ import annotations

from pathlib import Path

from lora_lab.models.classifier import Classifier
from lora_lab.regimes.base import Regime


class HeadOnly(Regime):
    def apply(self, classifier: Classifier) -> None:
        classifier.requires_grad_(False)
        classifier.head().requires_grad_(True)

    def save_adapter(self, classifier: Classifier, out_dir: Path) -> None:
        classifier.save_head(out_dir)

    def load_adapter(self, classifier: Classifier, adapter_dir: Path) -> None:
        classifier.load_head(adapter_dir)
