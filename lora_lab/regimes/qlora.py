"""QLoRA (Dettmers et al., 2023): LoRA on a frozen base quantized by bitsandbytes (NF4, or LLM.int8).

apply() quantizes every linear of the transformer but the head (kbit.py), prepares it with PEFT's
prepare_model_for_kbit_training, then wraps it in LoRA exactly as the lora regime does. The adapter
is plain LoRA weights (+ head); load_adapter() re-quantizes a fresh fp32 base the same way first
(quantization is deterministic), so the pair reproduces the trained model. merged/ is fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peft import prepare_model_for_kbit_training
from peft.tuners.lora import LoraLayer
from peft.utils import ModulesToSaveWrapper

from lora_lab.models.classifier import Classifier
from lora_lab.regimes.kbit import Quantization, dequantize_linears, dequantized_linear, quantize_linears
from lora_lab.regimes.lora import LoRA


class QLoRA(LoRA):
    def __init__(
        self,
        name: str,
        learning_rate: float,
        head_learning_rate: float | None = None,
        bits: int = 4,
        quant_type: str = "nf4",
        double_quant: bool = True,
        compute_dtype: str = "float32",
        int8_threshold: float = 6.0,
        gradient_checkpointing: bool = False,
        **lora: Any,
    ):
        """The quantization settings, then LoRA's (lora.yaml's keys, LoraConfig fields)."""
        super().__init__(name, learning_rate, head_learning_rate, **lora)
        self.quantization = Quantization(bits, quant_type, double_quant, compute_dtype, int8_threshold)
        self.gradient_checkpointing = gradient_checkpointing

    def quantize(self, classifier: Classifier) -> list[str]:
        """Quantize the transformer's linears in place, never the head's (it trains in full)."""
        head = list(classifier.head().modules())
        return quantize_linears(classifier.transformer, self.quantization, keep=head)

    def apply(self, classifier: Classifier) -> None:
        self.quantize(classifier)
        # Freezes the base and upcasts fp16/bf16 parameters (LayerNorms) to fp32 (a no-op on our fp32
        # backbones); switches gradient checkpointing on if asked. Non-reentrant checkpointing (torch's
        # recommendation) lets gradients reach the LoRA weights inside a recomputed block even though
        # the block's input (frozen embeddings) does not require grad.
        classifier.transformer = prepare_model_for_kbit_training(
            classifier.transformer,
            use_gradient_checkpointing=self.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        super().apply(classifier)

    def load_adapter(self, classifier: Classifier, adapter_dir: Path) -> None:
        self.quantize(classifier)  # the base the adapter was trained on, bit for bit
        super().load_adapter(classifier, adapter_dir)

    def merge(self, classifier: Classifier) -> None:
        """Fold LoRA into the dequantized base: W' = dequant(W_q) + (alpha / r) * B @ A, in fp32.

        Not PEFT's merge_and_unload: on bitsandbytes layers it re-quantizes W' to 4 or 8 bits
        (peft/tuners/lora/bnb.py, Linear4bit.merge / Linear8bitLt.merge), a second rounding that
        leaves bitsandbytes modules behind. The fp32 fold computes what the 4-bit model computed, up
        to float rounding; an 8-bit model also rounded its activations to int8 (LLM.int8), merged/ does not.
        """
        model = classifier.transformer
        for layer in [m for m in model.modules() if isinstance(m, LoraLayer)]:
            delta = sum(layer.get_delta_weight(adapter) for adapter in layer.active_adapters)
            layer.base_layer = dequantized_linear(layer.get_base_layer(), delta)
        # A stock head trains as a modules_to_save copy. unload() would keep PEFT's untouched original
        # (PEFT >= 0.22 does: unloading without merging drops the adapters' copies), so put the trained
        # copy in the wrapper's place first; unload() then swaps each LoRA layer for its base layer,
        # now the folded fp32 linear.
        base = model.get_base_model()
        for name, wrapper in [(n, m) for n, m in base.named_modules() if isinstance(m, ModulesToSaveWrapper)]:
            base.set_submodule(name, wrapper.modules_to_save[wrapper.active_adapters[0]])
        classifier.transformer = model.unload()
        dequantize_linears(classifier.transformer)  # the quantized linears LoRA did not target
