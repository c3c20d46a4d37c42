"""bitsandbytes k-bit linears: swap a model's nn.Linear layers for frozen 4-bit or 8-bit ones, and back.

QLoRA's half of the story that is not LoRA. Quantizing a model we already hold in fp32 (rather
than through transformers' BitsAndBytesConfig at load time) keeps the backbone code unaware of
quantization and lets the same call rebuild the identical quantized base for re-evaluation.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

import lora_lab
from lora_lab.errors import ConfigError

COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# The flags transformers' bitsandbytes quantizers set on a model; PEFT reads them to wrap
# bnb.nn.Linear4bit / Linear8bitLt with its bnb-aware LoRA layers (peft/tuners/lora/model.py) and
# prepare_model_for_kbit_training to switch on its k-bit preparation.
LOADED_FLAG = {4: "is_loaded_in_4bit", 8: "is_loaded_in_8bit"}


def bitsandbytes():  # the module, imported on first use: only QLoRA jobs need it
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise ImportError(
            "regime=qlora needs bitsandbytes (lora_lab installs it on Linux only): "
            ".venv/bin/pip install -c constraints.txt 'bitsandbytes>=0.45'"
        ) from err
    lora_lab.bitsandbytes_kernel_message.release()  # a quantizing regime runs: its CPU-kernel notice matters now
    return bnb


@dataclass(frozen=True)
class Quantization:
    """How each frozen linear is stored: `bits` 4 (NF4 or FP4 blocks) or 8 (LLM.int8 rows)."""

    bits: int = 4
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "float32"
    int8_threshold: float = 6.0

    def __post_init__(self) -> None:
        if self.bits not in LOADED_FLAG:
            raise ConfigError(
                f"regime.bits={self.bits}: bitsandbytes stores 4 (NF4/FP4) or 8 (LLM.int8) bits; set regime.bits=4 or 8"
            )
        if self.quant_type not in ("nf4", "fp4"):
            raise ConfigError(f"regime.quant_type={self.quant_type!r}: the 4-bit data types are nf4 (QLoRA's) and fp4")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"regime.compute_dtype={self.compute_dtype!r}: choose one of {sorted(COMPUTE_DTYPES)}")

    def quantized(self, linear: nn.Linear) -> nn.Module:
        """A frozen bitsandbytes copy of `linear`, quantized on the device its weights are on."""
        bnb = bitsandbytes()
        has_bias = linear.bias is not None
        if self.bits == 4:
            module = bnb.nn.Linear4bit(
                linear.in_features,
                linear.out_features,
                has_bias,
                compute_dtype=COMPUTE_DTYPES[self.compute_dtype],
                compress_statistics=self.double_quant,
                quant_type=self.quant_type,
            )
            # On an AVX-512 BF16 CPU, bitsandbytes repacks the 4-bit weight for its bf16 inference kernel
            # on the first eval forward (validation), and training then loses the gradient through W.
            # This per-module flag gates only that repack (docs/known-issues.md).
            module.support_avx512bf16_for_cpu = False
            # bitsandbytes' CPU dequantize assumes every row starts a 64-weight block, so rows not
            # 64-aligned dequantize wrongly and silently (docs/known-issues.md); real backbones are.
            if linear.in_features % module.weight.blocksize:
                raise ValueError(
                    f"4-bit quantization of a linear with in_features={linear.in_features}: bitsandbytes' CPU "
                    f"kernel dequantizes such rows wrongly unless in_features is a multiple of its blocksize "
                    f"({module.weight.blocksize}). Use regime.bits=8, or a backbone whose hidden sizes are "
                    "multiples of 64 (tiny test backbones: backbone.random_init.hidden_size=64)"
                )
        else:
            # has_fp16_weights=False: int8 weights with one fp32 scale per output row (SCB);
            # threshold: input columns with an |activation| above it run in fp16 (LLM.int8 outliers).
            module = bnb.nn.Linear8bitLt(
                linear.in_features,
                linear.out_features,
                has_bias,
                has_fp16_weights=False,
                threshold=self.int8_threshold,
            )
        module.load_state_dict(linear.state_dict())
        device = linear.weight.device
        try:
            module = module.to(device)  # Params4bit / Int8Params quantize on their first move to a device
        except (RuntimeError, NotImplementedError) as err:
            raise RuntimeError(
                f"bitsandbytes {bnb.__version__} cannot quantize on {device}: {err}. It needs a CUDA GPU "
                "(trainer=gpu) or its CPU backend (bitsandbytes>=0.45 on x86-64/aarch64): "
                ".venv/bin/pip install -c constraints.txt -U bitsandbytes"
            ) from err
        module.requires_grad_(False)
        module.register_load_state_dict_pre_hook(load_quant_state)
        return module


def quantize_linears(model: nn.Module, quantization: Quantization, keep: Collection[nn.Module] = ()) -> list[str]:
    """Replace every nn.Linear of `model` but those in `keep` with its quantized copy; return their names."""
    keep_ids = {id(m) for m in keep}
    replaced = [
        name
        for name, module in model.named_modules()
        if type(module) is nn.Linear and id(module) not in keep_ids  # exact type: bnb linears subclass nn.Linear
    ]
    if not replaced:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layers to quantize (GPT-2-style Conv1D models are not supported)"
        )
    for name in replaced:
        model.set_submodule(name, quantization.quantized(model.get_submodule(name)))
    setattr(model, LOADED_FLAG[quantization.bits], True)
    return replaced


def dequantized_linear(module: nn.Module, delta: torch.Tensor | None = None) -> nn.Linear:
    """An fp32 nn.Linear holding a bitsandbytes module's dequantized weight (plus `delta`, if given)."""
    from peft.utils.integrations import dequantize_bnb_weight

    # 8-bit: the first forward moves the row scales (SCB) from the weight into module.state.
    weight = dequantize_bnb_weight(module.weight, state=getattr(module, "state", None)).to(torch.float32)
    if delta is not None:
        weight = weight + delta.to(torch.float32)
    linear = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None, device=weight.device)
    linear.weight = nn.Parameter(weight, requires_grad=False)
    if module.bias is not None:
        linear.bias = nn.Parameter(module.bias.detach().to(torch.float32), requires_grad=False)
    return linear


def dequantize_linears(model: nn.Module) -> None:
    """Replace every bitsandbytes linear of `model` with its fp32 nn.Linear and drop the k-bit flags."""
    for name, module in list(model.named_modules()):
        if is_quantized(module):
            model.set_submodule(name, dequantized_linear(module))
    for flag in LOADED_FLAG.values():
        model.__dict__.pop(flag, None)


def is_quantized(module: nn.Module) -> bool:
    """Whether `module` is one of the bitsandbytes linears this file swaps in."""
    bnb = bitsandbytes()
    return isinstance(module, bnb.nn.Linear4bit | bnb.nn.Linear8bitLt)


def load_quant_state(module: nn.Module, state_dict: dict, prefix: str, *_: object) -> None:
    """load_state_dict pre-hook: load the statistics a bitsandbytes linear saves beside its weight.

    Restoring the best epoch's checkpoint before testing loads the whole module state. torch's
    loader copies the packed weight but knows nothing of a Linear4bit's `weight.absmax`,
    `weight.quant_map`, ... keys (strict loading fails on them), and Linear8bitLt's own loader
    only finds its row scales on the weight, where they no longer are after the first forward
    (bitsandbytes' "Loading a quantized checkpoint into non-quantized Linear8bitLt").
    """
    bnb = bitsandbytes()
    if isinstance(module, bnb.nn.Linear4bit):
        stats_prefix = f"{prefix}weight."  # weight.absmax, weight.quant_map, weight.quant_state.bitsandbytes__nf4, ...
        stats = {k[len(stats_prefix) :]: state_dict.pop(k) for k in list(state_dict) if k.startswith(stats_prefix)}
        if stats:
            state = bnb.functional.QuantState.from_dict(stats, device=module.weight.device)
            module.weight.quant_state = module.quant_state = state
    elif (scb := state_dict.pop(f"{prefix}SCB", None)) is not None:
        live = module.state.SCB if module.state.SCB is not None else module.weight.SCB
        live.copy_(scb)
