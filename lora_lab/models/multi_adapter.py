"""One frozen base transformer serving several PEFT adapters (one per domain); `use(name)` switches.

PEFT keeps every loaded adapter's weights beside the shared base layers and routes through the
active one (`set_adapter`). A stock head lives inside PEFT (modules_to_save), so it switches with
the adapter. A pooled head lives outside PEFT: each adapter dir carries its own head.safetensors,
and `use()` swaps the head module too; switching only the adapter would score domain d's
adapter through another domain's head.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from peft import PeftModel
from torch import nn

from lora_lab.models.backbones import Backbone
from lora_lab.models.classifier import Classifier

PEFT_CONFIG_FILE = "adapter_config.json"


class MultiAdapterClassifier(nn.Module):
    """A Classifier whose transformer is a PeftModel holding several named adapters."""

    def __init__(self, classifier: Classifier, heads: dict[str, nn.ModuleDict]):
        super().__init__()
        self.classifier = classifier
        # External heads by adapter name (empty for a stock head: PEFT switches that one).
        self.heads = nn.ModuleDict(heads)
        self.active: str | None = None

    @classmethod
    def load(
        cls, backbone: Backbone, adapters: dict[str, Path], id2label: dict[int, str], seed: int
    ) -> MultiAdapterClassifier:
        """The backbone's base (built as the jobs built it: same seed) with every adapter dir loaded.

        `adapters` maps a name to a job's adapter/ dir; all adapters share one label map, since a
        switch swaps weights, not the meaning of the logits' columns.
        """
        if not adapters:
            raise ValueError("MultiAdapterClassifier.load: no adapters given")
        for name, adapter_dir in adapters.items():
            if not (adapter_dir / PEFT_CONFIG_FILE).is_file():
                raise ValueError(
                    f"adapter {name!r}: {adapter_dir} holds no PEFT adapter ({PEFT_CONFIG_FILE}); switching "
                    "adapters needs a PEFT regime (lora, dora, ia3, loha, lokr, vera, adalora), not head or full"
                )
        classifier = backbone.build_classifier(id2label, seed=seed)
        (first, first_dir), *rest = adapters.items()
        classifier.transformer = PeftModel.from_pretrained(classifier.transformer, str(first_dir), adapter_name=first)
        for name, adapter_dir in rest:
            classifier.transformer.load_adapter(str(adapter_dir), adapter_name=name)
        heads = {}
        if classifier.external_head:
            for name, adapter_dir in adapters.items():
                classifier.load_head(adapter_dir)
                heads[name] = copy.deepcopy(classifier.head())
        model = cls(classifier, heads).eval()
        model.use(first)
        return model

    @property
    def adapter_names(self) -> list[str]:
        return list(self.classifier.transformer.peft_config)

    @property
    def id2label(self) -> dict[int, str]:
        return self.classifier.id2label

    def use(self, name: str) -> None:
        """Make `name` the active adapter (and head): every forward after this goes through it."""
        if name not in self.adapter_names:
            raise KeyError(f"no adapter {name!r} loaded; loaded: {self.adapter_names}")
        # inference_mode keeps the adapter frozen (PEFT would otherwise mark it trainable).
        self.classifier.transformer.set_adapter(name, inference_mode=True)
        if self.classifier.external_head:
            for attr, module in self.heads[name].items():
                setattr(self.classifier, attr, module)
        self.active = name

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(input_ids, attention_mask)
