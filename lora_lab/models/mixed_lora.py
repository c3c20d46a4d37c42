"""Mixed-adapter LoRA batches in two gathered matmuls per layer, whatever the number of adapters.

PEFT's own mixed forward (`adapter_names=`, peft/tuners/lora/layer.py `_mixed_batch_forward`) loops
over a batch's adapters in every LoRA layer: gather the adapter's rows, cast them to the adapter's
dtype, two small matmuls, scale, scatter-add. On MiniLM that is 36 layers x 3 adapters x ~7 small
ops per forward, each a few microseconds of dispatch on short texts, so three adapters in one batch
cost markedly more than one (docs/benchmarks.md, `scripts/bench_mixed_adapters.py`).

Here each LoRA layer keeps its adapters stacked, A as (n, in, r) and B as (n, r, out) with the
scaling alpha / r folded into B (exact when alpha / r is a power of two, as lora_lab's default 2 is)
and smaller ranks zero-padded (zeros add nothing, exactly), in the adapters' own dtype. A batch of b
rows of t tokens then adds

    delta = bmm(bmm(x, A[idx]), B[idx])    # (b, t, in) @ (b, in, r) @ (b, r, out)

where idx holds each row's adapter: the same four ops for one adapter or ten. A row's delta depends
only on that row, so a mixed batch gives each row what a batch of its adapter alone gives it.

Layers this cannot express fall back to PEFT's loop, per call: DoRA and other variants, a LoRA bias,
dropout in training mode, inputs that are not (rows, tokens, features).
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from peft import PeftModel
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import layer as peft_lora
from torch import nn

# Keyword arguments PEFT hands a LoRA layer for its variants (aLoRA's offsets), never for the base layer.
VARIANT_KWARG_KEYS = getattr(peft_lora, "VARIANT_KWARG_KEYS", ("alora_offsets",))
PATCHED = "_lora_lab_gathered"  # marks a layer whose mixed forward is ours


@dataclass(frozen=True)
class LoraStack:
    """One layer's adapters, stacked; slot len(index) is all zeros (an adapter that skips the layer)."""

    keys: tuple[str, ...]
    dtype: torch.dtype  # the adapters' (bf16 once the server casts them: serve/engine.py)
    index: dict[str, int]
    a: torch.Tensor  # (n + 1, in, r_max)
    b: torch.Tensor  # (n + 1, r_max, out), scaled


def stacked(layer: LoraLinear) -> LoraStack:
    """The layer's current adapters stacked, rebuilt only when they (or their dtype) changed."""
    keys = tuple(layer.lora_A.keys())
    dtype = layer.lora_A[keys[0]].weight.dtype if keys else torch.float32
    cached: LoraStack | None = getattr(layer, "_lora_lab_stack", None)
    if cached is not None and cached.keys == keys and cached.dtype == dtype:
        return cached
    r_max = max((layer.r[k] for k in keys), default=1)
    base = layer.get_base_layer()
    a = torch.zeros(len(keys) + 1, base.in_features, r_max, dtype=torch.float32)
    b = torch.zeros(len(keys) + 1, r_max, base.out_features, dtype=torch.float32)
    for i, key in enumerate(keys):
        r = layer.r[key]
        a[i, :, :r] = layer.lora_A[key].weight.detach().float().T
        b[i, :r, :] = (layer.lora_B[key].weight.detach().float() * layer.scaling[key]).T
    stack = LoraStack(keys, dtype, {k: i for i, k in enumerate(keys)}, a.to(dtype), b.to(dtype))
    layer._lora_lab_stack = stack
    return stack


def _plain(layer: LoraLinear, name: str) -> bool:
    """Whether adapter `name` is plain LoRA on this layer: no variant (DoRA, ...), no bias on B."""
    variant = name in getattr(layer, "lora_variant", {}) or getattr(layer, "use_dora", {}).get(name, False)
    return not variant and not getattr(layer, "lora_bias", {}).get(name, False)


def _expressible(layer: LoraLinear, x: torch.Tensor, names: list[str], variant_kwargs: dict) -> bool:
    """Whether the gathered form computes what PEFT's loop would for this call."""
    return (
        not layer.training
        and not any(v is not None for v in variant_kwargs.values())  # aLoRA's offsets and the like
        and x.dim() == 3
        and x.shape[0] == len(names)
        and all(_plain(layer, n) for n in set(names))
    )


def _gathered_mixed_forward(self: LoraLinear, x: torch.Tensor, *args, adapter_names: list[str], **kwargs):
    """Bound as the layer's `_mixed_batch_forward` (PEFT's forward calls it when adapter_names= is given)."""
    variant_kwargs = {k: kwargs.pop(k) for k in VARIANT_KWARG_KEYS if k in kwargs}  # never the base layer's
    if not _expressible(self, x, adapter_names, variant_kwargs):
        return type(self)._mixed_batch_forward(self, x, *args, adapter_names=adapter_names, **variant_kwargs, **kwargs)
    result = self.base_layer(x, *args, **kwargs)
    stack = stacked(self)
    zero = len(stack.keys)
    idx = torch.tensor([stack.index.get(n, zero) for n in adapter_names], device=x.device)
    delta = torch.bmm(torch.bmm(x.to(stack.dtype), stack.a[idx]), stack.b[idx])
    return (result + delta).to(result.dtype)  # as PEFT's forward sums and rounds


def gather_mixed_batches(model: PeftModel) -> int:
    """Give every plain LoRA Linear of `model` the gathered mixed forward (idempotent); return how many
    layers have it. Adapters loaded or deleted later are picked up on the next forward (`stacked`)."""
    count = 0
    for module in model.modules():
        if isinstance(module, LoraLinear) and isinstance(module.get_base_layer(), nn.Linear):
            if not getattr(module, PATCHED, False):
                module._mixed_batch_forward = types.MethodType(_gathered_mixed_forward, module)
                setattr(module, PATCHED, True)
            count += 1
    return count
