"""LoRA at inference, for the server: one adapter or a mixed batch, the update fused into the base output.

PEFT's forward (peft/tuners/lora/layer.py) adds `lora_B(lora_A(dropout(x))) * scaling` to the base
layer's output: five ops and a Python loop over the active adapters per layer, 36 times on MiniLM.
In bf16 the adapter made 32 short texts cost 81 ms against 55 without it, and the form below 73
(`scripts/bench_lora_forward.py`, docs/benchmarks.md). Its mixed forward (`adapter_names=`,
`_mixed_batch_forward`) loops over a batch's adapters in every layer besides.

Here each LoRA layer keeps its adapters stacked, A as (n, in, r) and B as (n, r, out) with the
scaling alpha / r folded into B (exact when alpha / r is a power of two, as lora_lab's default 2 is)
and smaller ranks zero-padded (zeros add nothing, exactly), in the adapters' own dtype. Then

    one adapter:   out += (x @ A[i]) @ B[i]                 # two mm and an in-place add
    mixed batch:   out += bmm(bmm(x, A[idx]), B[idx])       # (b, t, in) @ (b, in, r) @ (b, r, out)

where idx holds each row's adapter: the same ops for one adapter or ten. A row's delta depends only
on that row, so a mixed batch gives each row what a batch of its adapter alone gives it.

Calls this cannot express go to PEFT's forward: DoRA and other variants, a LoRA bias, training
(dropout), a merged layer, disabled adapters, a mixed batch not shaped (rows, tokens, features), and
anything inside `peft_forward()`, which the engine's load-time check holds ours against.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from peft import PeftModel
from peft.tuners.lora import Linear as LoraLinear
from torch import nn

PATCHED = "_lora_lab_fused"  # marks a layer whose forward is ours
_peft_only = False  # set within peft_forward()
# A bf16 matmul pays oneDNN ~25 us a call whatever its size, fp32's MKL a few: a rank-8 update of a
# few tokens costs more in bf16 than in fp32 with the casts. Up to FEW_ROWS rows (tokens over the
# batch) the update runs in fp32 and is rounded once into the bf16 output (docs/benchmarks.md).
FEW_ROWS = 32


@dataclass(frozen=True)
class LoraStack:
    """One layer's adapters, stacked; slot len(index) is all zeros (an adapter that skips the layer)."""

    keys: tuple[str, ...]
    dtype: torch.dtype  # the adapters' (bf16 once the server casts them: serve/engine.py)
    index: dict[str, int]
    a: torch.Tensor  # (n + 1, in, r_max)
    b: torch.Tensor  # (n + 1, r_max, out), scaled
    a32: torch.Tensor  # a and b in fp32 (the same tensors when dtype is fp32): few-token calls
    b32: torch.Tensor


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
    stack = LoraStack(keys, dtype, {k: i for i, k in enumerate(keys)}, a.to(dtype), b.to(dtype), a, b)
    layer._lora_lab_stack = stack
    return stack


def _plain(layer: LoraLinear, name: str) -> bool:
    """Whether adapter `name` is plain LoRA on this layer: no variant (DoRA, ...), no bias on B."""
    variant = name in getattr(layer, "lora_variant", {}) or getattr(layer, "use_dora", {}).get(name, False)
    return not variant and not getattr(layer, "lora_bias", {}).get(name, False)


def _expressible(layer: LoraLinear, x: torch.Tensor, names: list[str], mixed: bool, extra: dict) -> bool:
    """Whether our forward computes what PEFT's would for this call (`names`: each row's adapter;
    `mixed`: given per row, so rows are x's first dim of (rows, tokens, features))."""
    return (
        not _peft_only
        and not layer.training
        and not layer.merged
        and not layer.disable_adapters
        and not any(v is not None for v in extra.values())  # aLoRA's offsets and the like
        and (not mixed or (x.dim() == 3 and x.shape[0] == len(names)))
        and all(_plain(layer, n) for n in set(names))
    )


def _forward(self: LoraLinear, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Bound as the layer's `forward`: one adapter or a mixed batch, the LoRA update fused into the
    base layer's output; anything else (training, DoRA, merged, extra arguments) goes to PEFT's."""
    adapter_names = kwargs.get("adapter_names")
    extra = {k: v for k, v in kwargs.items() if k != "adapter_names"}
    active = self.active_adapters
    names = adapter_names if adapter_names is not None else active[:1] if len(active) == 1 else []
    if args or not names or not _expressible(self, x, names, adapter_names is not None, extra):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    stack = stacked(self)
    xs = x.to(stack.dtype)
    if adapter_names is None:  # one adapter: on (rows * tokens, features)
        if names[0] not in stack.index:
            return result  # this adapter skips this layer
        i = stack.index[names[0]]
        rows = xs.reshape(-1, xs.shape[-1])
        if stack.dtype != torch.float32 and rows.shape[0] <= FEW_ROWS:
            delta = (rows.float() @ stack.a32[i]) @ stack.b32[i]
            result.view(-1, result.shape[-1]).add_(delta.to(result.dtype))
            return result
        mid, b = rows @ stack.a[i], stack.b[i]
        if result.dtype == stack.dtype:  # the add fused into the matmul (oneDNN's sum post-op)
            result.view(-1, result.shape[-1]).addmm_(mid, b)
            return result
        return (result + (mid @ b).view(result.shape)).to(result.dtype)
    # Each row its own adapter (the zero slot: one that skips this layer).
    idx = torch.tensor([stack.index.get(n, len(stack.keys)) for n in names], device=x.device)
    mid, b = torch.bmm(xs, stack.a[idx]), stack.b[idx]
    if result.dtype == stack.dtype:
        return result.baddbmm_(mid, b)
    return (result + torch.bmm(mid, b)).to(result.dtype)  # as PEFT's forward sums and rounds


@contextmanager
def peft_forward() -> Iterator[None]:
    """Within: every patched layer runs PEFT's own forward (what the engine checks ours against)."""
    global _peft_only
    _peft_only = True
    try:
        yield
    finally:
        _peft_only = False


def fuse_lora_forward(model: PeftModel) -> int:
    """Give every plain LoRA Linear of `model` our inference forward (idempotent); return how many
    layers have it. Adapters loaded or deleted later are picked up on the next forward (`stacked`)."""
    count = 0
    for module in model.modules():
        if isinstance(module, LoraLinear) and isinstance(module.get_base_layer(), nn.Linear):
            if not getattr(module, PATCHED, False):
                module.forward = types.MethodType(_forward, module)
                setattr(module, PATCHED, True)
            count += 1
    return count
