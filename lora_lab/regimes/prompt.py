"""Prompt tuning (Lester et al., 2021) through PEFT: n trainable virtual-token embeddings,
prepended to every input; the backbone stays frozen, the head trains.

The cheapest regime in parameters after head-only (n x hidden: 20 x 384 = 7,680 for MiniLM) but
not in compute: every sequence grows by n tokens, so a short Banking77 batch (~16 tokens) costs
about twice as much per step as LoRA's. The paper's result is that prompt tuning matches full
fine-tuning only at ~10B parameters; on a 22M encoder expect it below LoRA. It is here because a
fair comparison needs the prompt-style family in the table, not because it should win.

There is no merged form: virtual tokens are extra inputs, not a weight update, so the job ships
adapter/ (the prompt embeddings + the head) and can_merge() says no.
Prefix tuning (virtual keys/values per layer via past_key_values) is not offered: the encoders
here (BERT in transformers 5) take no past_key_values, and PEFT routes prefix tuning through them.
"""

from __future__ import annotations

from typing import Any

from peft import PromptTuningConfig, PromptTuningInit

from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier, StockHeadClassifier
from lora_lab.regimes.peft_regime import PeftRegime

# TEXT needs a tokenizer and a text to start from; the two offered start from embeddings' scale or N(0, 1).
INITS = (PromptTuningInit.SAMPLE_VOCAB.value, PromptTuningInit.RANDOM.value)


class PromptTuning(PeftRegime):
    config_class = PromptTuningConfig

    def __init__(self, name: str, learning_rate: float, head_learning_rate: float | None = None, **settings: Any):
        init = settings.get("prompt_tuning_init", PromptTuningInit.RANDOM.value)
        if init not in INITS:
            raise ConfigError(
                f"regime.prompt_tuning_init={init!r}: choose SAMPLE_VOCAB (rows drawn from the vocabulary's "
                "embeddings) or RANDOM (PEFT's N(0, 1), far off the scale of trained embeddings)"
            )
        if settings.get("num_virtual_tokens", 0) < 1:
            raise ConfigError(
                f"regime.num_virtual_tokens={settings.get('num_virtual_tokens')}: needs at least 1 virtual token"
            )
        super().__init__(name, learning_rate, head_learning_rate, **settings)

    def apply(self, classifier: Classifier) -> None:
        if isinstance(classifier, StockHeadClassifier) and "score" in classifier.head_names:
            # HF's decoder heads (`score`) read the last non-pad token, found from input_ids; PEFT
            # passes inputs_embeds instead, so they would read the last position, a pad token in a
            # right-padded batch.
            raise ConfigError(
                "regime=prompt on a decoder with HF's stock head (backbone.pooling=cls): the head would read "
                "padding. Use backbone.pooling=last (lora_lab's pooled head finds the last real token)"
            )
        super().apply(classifier)

    def can_merge(self, classifier: Classifier) -> bool:
        return False
