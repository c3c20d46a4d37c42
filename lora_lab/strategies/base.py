"""The Strategy: how a regime shapes a classifier (freeze / wrap), saves and merges its adapter."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from peft import PeftConfig, PeftModel, get_peft_model

from lora_lab.models.classifier import Classifier

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from lora_lab.data.datamodule import TextClassificationDataModule


class Strategy(ABC):
    """Base of every `conf/regime/*.yaml` target.

    Life of a strategy in a job: apply() before training; after testing, save_adapter() writes
    adapter/ (what a deployment adds on top of the shared base) and merge() folds it into the
    weights for merged/. load_adapter() is the inverse of save_adapter(), for re-evaluation.
    """

    name: ClassVar[str]
    # False for regimes whose "adapter" would be the whole model (full fine-tune): merged/ only.
    has_adapter: ClassVar[bool] = True
    # False for regimes fitted without gradient epochs (zero-shot, prototypes): the job skips
    # trainer.fit, validates and tests the model prepare() left behind.
    trains_by_gradient: ClassVar[bool] = True
    registry: ClassVar[dict[str, type[Strategy]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            Strategy.registry[cls.name] = cls

    def __init__(self, name: str, learning_rate: float, head_learning_rate: float | None = None):
        if name != self.name:
            raise ValueError(f"regime.name={name!r} but its _target_ is the {self.name!r} strategy")
        # Read by the module's optimizer (module.learning_rate: ${regime.learning_rate}):
        # the right step size depends on the regime (a head alone takes far larger steps than full).
        self.learning_rate, self.head_learning_rate = learning_rate, head_learning_rate

    @abstractmethod
    def apply(self, classifier: Classifier) -> None:
        """Freeze, wrap or quantize `classifier` in place, leaving trainable what this regime trains."""

    def prepare(self, classifier: Classifier, datamodule: TextClassificationDataModule) -> None:
        """Fit what the regime fits outside the gradient epochs, after apply() and before training:
        label-description or prototype heads, a contrastive phase. Timed as training time."""

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


class PeftStrategy(Strategy):
    """A regime that is a PEFT config: subclasses only say which config (see lora.py)."""

    @abstractmethod
    def peft_config(self, classifier: Classifier) -> PeftConfig: ...

    def modules_to_save(self, classifier: Classifier) -> list[str] | None:
        # A stock head lives inside the transformer: PEFT must train and save it in full.
        # A pooled head lives outside it, trains anyway and is saved beside the adapter.
        return None if classifier.external_head else list(classifier.head_names)

    def shared_config(self, classifier: Classifier) -> dict:
        """The PEFT config settings every method takes alike: task, target modules, head to save."""
        return {
            "task_type": classifier.peft_task_type,
            "target_modules": listed(getattr(self, "target_modules", None)),
            "modules_to_save": self.modules_to_save(classifier),
        }

    def apply(self, classifier: Classifier) -> None:
        classifier.transformer = get_peft_model(classifier.transformer, self.peft_config(classifier))

    def save_adapter(self, classifier: Classifier, out_dir: Path) -> None:
        classifier.transformer.save_pretrained(str(out_dir), safe_serialization=True)
        if classifier.external_head:
            classifier.save_head(out_dir)

    def load_adapter(self, classifier: Classifier, adapter_dir: Path) -> None:
        classifier.transformer = PeftModel.from_pretrained(classifier.transformer, str(adapter_dir))
        if classifier.external_head:
            classifier.load_head(adapter_dir)

    def merge(self, classifier: Classifier) -> None:
        classifier.transformer = classifier.transformer.merge_and_unload()


def listed(modules: list[str] | str | None) -> list[str] | str | None:
    """Target modules as PEFT takes them: a plain list (not an OmegaConf ListConfig), a string
    such as "all-linear", or None for PEFT's per-architecture default."""
    return modules if modules is None or isinstance(modules, str) else list(modules)
