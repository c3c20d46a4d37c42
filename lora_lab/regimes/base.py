"""The Regime: how a fine-tuning method shapes a classifier (freeze / wrap), saves and merges its adapter."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lora_lab.models.classifier import Classifier

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from transformers import PreTrainedTokenizerBase

    from lora_lab.data.datamodule import TextClassificationDataModule
    from lora_lab.models.backbones import Backbone


class Regime(ABC):
    """Base of every `conf/regime/*.yaml` target.

    Life of a regime in a job: apply() before training; after testing, save_adapter() writes
    adapter/ (what a deployment adds on top of the shared base) and merge() folds it into the
    weights for merged/. load_adapter() is the inverse of save_adapter(), for re-evaluation.
    """

    # False for regimes whose "adapter" would be the whole model (full fine-tune): merged/ only.
    has_adapter: ClassVar[bool] = True
    # False for regimes fitted without gradient epochs (zero-shot, prototypes): the job skips
    # trainer.fit, validates and tests the model prepare() left behind.
    trains_by_gradient: ClassVar[bool] = True
    # False for a regime that learns from no labelled row (zero-shot): a TF-IDF part fitted on the
    # training rows would make it something else, so the job is never stacked (job/stacking.py).
    learns_from_rows: ClassVar[bool] = True
    # The job dir's subdir save_adapter() writes. tfidf: tfidf/, its whole model, which is no
    # adapter of a transformer (export and serve look for adapter/ and merged/, and refuse it).
    adapter_dir: ClassVar[str] = "adapter"

    def __init__(self, name: str, learning_rate: float, head_learning_rate: float | None = None):
        # The name the registry knew it by (lora_lab.regimes.REGIMES): dora is a LoRA named dora.
        self.name = name
        # Read by the module's optimizer (module.learning_rate: ${regime.learning_rate}):
        # the right step size depends on the regime (a head alone takes far larger steps than full).
        self.learning_rate, self.head_learning_rate = learning_rate, head_learning_rate

    def tokenizer(self, backbone: Backbone) -> PreTrainedTokenizerBase:
        """What turns the job's texts into the model's token ids: the backbone's tokenizer."""
        return backbone.tokenizer

    def build_classifier(self, backbone: Backbone, id2label: dict[int, str], seed: int = 0) -> Classifier:
        """The model apply() shapes: the backbone's transformer and head (tfidf: a model of its own)."""
        return backbone.build_classifier(id2label, seed=seed)

    @abstractmethod
    def apply(self, classifier: Classifier) -> None:
        """Freeze, wrap or quantize `classifier` in place, leaving trainable what this regime trains."""

    def prepare(self, classifier: Classifier, datamodule: TextClassificationDataModule) -> None:
        """Fit what the regime fits outside the gradient epochs, after apply() and before training:
        label-description or prototype heads, a contrastive phase. Timed as training time."""

    def results(self) -> dict[str, Any]:
        """What prepare() measured, for metrics.json (e.g. a contrastive run's validation checks)."""
        return {}

    def callbacks(self) -> list[pl.Callback]:
        """Lightning callbacks the regime needs during training (added to the job's own)."""
        return []

    def on_fit_start(self, classifier: Classifier, total_steps: int) -> None:
        """Called once training starts, when the number of optimizer steps is known (AdaLoRA's budget)."""

    def after_optimizer_step(self, classifier: Classifier, global_step: int) -> None:
        """Called after each optimizer step, before gradients are zeroed (AdaLoRA's rank allocation)."""

    def save_adapter(self, classifier: Classifier, out_dir: Path) -> None:
        """Write what a deployment adds on top of the shared base model into out_dir."""
        raise NotImplementedError(f"regime {self.name} has no adapter")

    def load_adapter(self, classifier: Classifier, adapter_dir: Path) -> None:
        raise NotImplementedError(f"regime {self.name} has no adapter to load; use the merged model")

    def can_merge(self, classifier: Classifier) -> bool:
        """Whether merge() can fold this trained model into a plain transformers model; when not,
        the job ships adapter/ alone (dendrites whose branches change the output)."""
        return True

    def merge(self, classifier: Classifier) -> None:
        """Fold the adapter into the weights, leaving a plain transformers model (no-op by default)."""
