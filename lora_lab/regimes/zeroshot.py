"""Zero-shot: no training. The head scores a text by its cosine similarity to each label's
description, all embedded by the frozen backbone.

prepare() embeds `template.format(description)` for every label (the dataset's
label_descriptions, else its label names) and writes cosine_head(...) into the linear head:
logits_j = scale * cos(x, d_j) * |x| / r, r the descriptions' mean norm (fitted_heads.py says
why a linear head reads the cosine this way). merged/ is a plain pooled classifier and adapter/
the head alone, as for head-only training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier
from lora_lab.models.embedding import embed_texts, require_embeddings, write_head
from lora_lab.models.fitted_heads import cosine_head
from lora_lab.regimes.head import HeadOnly

if TYPE_CHECKING:
    from lora_lab.data.datamodule import TextClassificationDataModule


class ZeroShot(HeadOnly):
    trains_by_gradient = False
    learns_from_rows = False

    def __init__(
        self,
        name: str,
        learning_rate: float,
        template: str = "{}",
        scale: float = 20.0,
        head_learning_rate: float | None = None,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        if template.count("{}") != 1:
            raise ConfigError(f"regime.template={template!r}: needs exactly one {{}} where the label description goes")
        if scale <= 0:
            raise ConfigError(f"regime.scale={scale}: the cosine logit scale must be positive")
        self.template, self.scale = template, scale

    def apply(self, classifier: Classifier) -> None:
        require_embeddings(classifier, self.name)
        # Nothing learns from labelled rows: the head is written from the label descriptions.
        classifier.requires_grad_(False)

    def prompts(self, datamodule: TextClassificationDataModule) -> list[str]:
        """The texts embedded as the labels, in label-id order."""
        # A described label the data lacks is a typo that would leave the real label on its bare name.
        unknown = sorted(set(datamodule.source.label_descriptions) - set(datamodule.labels or []))
        if unknown:
            raise ValueError(
                f"dataset.label_descriptions describes {unknown}, which are not labels of {datamodule.source.name} "
                f"({datamodule.labels}); fix the keys to match the label names"
            )
        return [self.template.format(d) for d in datamodule.label_descriptions()]

    def prepare(self, classifier: Classifier, datamodule: TextClassificationDataModule) -> None:
        labels = embed_texts(classifier, datamodule, self.prompts(datamodule))
        write_head(classifier, *cosine_head(labels, labels.norm(dim=1).mean().item(), self.scale))
