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

from peft import PromptTuningConfig, PromptTuningInit

from lora_lab.models.classifier import Classifier, StockHeadClassifier
from lora_lab.strategies.base import PeftStrategy

INITS = {init.value.lower(): init for init in PromptTuningInit}


class PromptTuning(PeftStrategy):
    name = "prompt"

    def __init__(
        self,
        name: str,
        learning_rate: float,
        num_virtual_tokens: int = 20,
        init: str = "sample_vocab",
        head_learning_rate: float | None = None,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        if init not in INITS or init == "text":
            raise ValueError(
                f"regime.init={init!r}: choose sample_vocab (rows drawn from the vocabulary's embeddings) or "
                "random (PEFT's N(0, 1), far off the scale of trained embeddings)"
            )
        if num_virtual_tokens < 1:
            raise ValueError(f"regime.num_virtual_tokens={num_virtual_tokens}: needs at least 1 virtual token")
        self.num_virtual_tokens, self.init = num_virtual_tokens, INITS[init]

    def shared_config(self, classifier: Classifier) -> dict:
        # Prompt learning has no target modules: it feeds the embeddings, not the layers.
        config = super().shared_config(classifier)
        del config["target_modules"]
        return config

    def peft_config(self, classifier: Classifier) -> PromptTuningConfig:
        return PromptTuningConfig(
            **self.shared_config(classifier),
            num_virtual_tokens=self.num_virtual_tokens,
            prompt_tuning_init=self.init,
        )

    def apply(self, classifier: Classifier) -> None:
        if isinstance(classifier, StockHeadClassifier) and "score" in classifier.head_names:
            # HF's decoder heads (`score`) read the last non-pad token, found from input_ids; PEFT
            # passes inputs_embeds instead, so they would read the last position, a pad token in a
            # right-padded batch.
            raise ValueError(
                "regime=prompt on a decoder with HF's stock head (backbone.pooling=cls): the head would read "
                "padding. Use backbone.pooling=last (lora_lab's pooled head finds the last real token)"
            )
        super().apply(classifier)

    def can_merge(self, classifier: Classifier) -> bool:
        return False
