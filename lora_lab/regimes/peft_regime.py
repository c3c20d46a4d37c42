"""A regime that is one PEFT config: the YAML's keys are that config's fields.

conf/regime/lora.yaml's `r`, `lora_alpha`, `lora_dropout`, `target_modules`, ... go into
peft.LoraConfig as they are; a method's module only names its config class (and, where it has
one, a default that depends on another field, such as LoRA's alpha = 2r). The classifier sets
the two fields a YAML must not: the task type and the head PEFT has to train and save.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import OmegaConf
from peft import PeftConfig, PeftModel, get_peft_model
from torch import nn

from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier
from lora_lab.models.weight_names import short_names
from lora_lab.regimes.base import Regime

# Fields that follow from the classifier, not from a choice in the YAML.
SET_BY_CLASSIFIER = ("task_type", "modules_to_save")


class PeftRegime(Regime):
    """`settings`: the PEFT config's fields from the YAML (plain Python values)."""

    config_class: ClassVar[type[PeftConfig]]

    def __init__(self, name: str, learning_rate: float, head_learning_rate: float | None = None, **settings: Any):
        super().__init__(name, learning_rate, head_learning_rate)
        fields = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(k for k in settings if k not in fields or k in SET_BY_CLASSIFIER)
        if unknown:
            # PeftConfig's own fields (peft_type, revision, ...) are bookkeeping, not the method's settings.
            settable = sorted(fields - {f.name for f in dataclasses.fields(PeftConfig)} - set(SET_BY_CLASSIFIER))
            raise ConfigError(
                f"regime={name}: {', '.join(f'regime.{k}' for k in unknown)} is not a field of "
                f"peft.{self.config_class.__name__} that a config sets; its fields: {', '.join(settable)}"
            )
        # OmegaConf lists -> plain lists: PEFT tests `isinstance(target_modules, str)` and copies the config.
        self.settings = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in settings.items()}

    def peft_config(self, classifier: Classifier) -> PeftConfig:
        return self.config_class(**self.settings, **self.classifier_settings(classifier))

    def classifier_settings(self, classifier: Classifier) -> dict[str, Any]:
        """The task, and the head to train in full: a stock head lives inside the transformer, so PEFT
        must train and save it; a pooled head lives outside it, trains anyway and is saved beside."""
        return {
            "task_type": classifier.peft_task_type,
            "modules_to_save": None if classifier.external_head else list(classifier.head_names),
        }

    def apply(self, classifier: Classifier) -> None:
        try:
            classifier.transformer = get_peft_model(classifier.transformer, self.peft_config(classifier))
        except ValueError as err:
            # What config validation cannot see without a local checkpoint (random, hub and GGUF models).
            if "not found in the base model" not in str(err):
                raise
            linear = short_names([n for n, m in classifier.transformer.named_modules() if isinstance(m, nn.Linear)])
            raise ConfigError(
                f"regime.target_modules={self.settings.get('target_modules')}: not all are modules of this backbone. "
                f"Its Linear modules are named {', '.join(linear)}; e.g. regime.target_modules=[{','.join(linear[:2])}]"
            ) from err

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
