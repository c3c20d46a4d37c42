"""A training batch's gradient in parts of at most `max_tokens` padded tokens, with the batch's exact math.

Why: training memory is the activations autograd keeps for the backward pass, about 28 KB per
token and layer for MiniLM (hidden 384, FFN 1536, fp32): a batch of 32 reviews padded to 316
tokens keeps ~10k tokens x 6 layers of them, plus attention, which measured 5 GB of RSS for one
step (docs/benchmarks.md). Peak memory follows the tokens of one forward pass, so a long batch
runs as several passes, each backpropagated at once and its activations freed.

Unlike fairseq's token budget (`--max-tokens` shrinks the batch), the optimiser still sees the
whole batch: each part's loss is weighted by its share of the batch's loss denominator (rows, or
the class weights of its rows' labels, as F.cross_entropy's `mean` divides by), so the summed
gradient is the batch's gradient up to float summation order. The sum reaches Lightning as a loss
whose backward() hands over the precomputed gradient, so Lightning's own backward, gradient
accumulation, clipping and precision plugin run unchanged. The cost is no extra compute: each
token is forwarded and backpropagated once, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def split_batch(batch: dict[str, torch.Tensor], max_tokens: int | None) -> list[dict[str, torch.Tensor]]:
    """`batch` as parts of at most max_tokens padded tokens each (at least one text per part).

    A chunked batch (data.long_text=chunk) has one row per window and `text_index` naming each
    row's text: a text's windows stay together, as its logits are their mean. Each part is
    re-trimmed to its own longest row, so it pays no padding for another part's texts.
    """
    width = batch["input_ids"].shape[1]
    if max_tokens is None or batch["input_ids"].numel() <= max_tokens:
        return [batch]
    owner = batch.get("text_index")
    n_texts = batch["labels"].numel()
    rows_of = [[i] for i in range(n_texts)] if owner is None else _rows_by_text(owner, n_texts)
    parts: list[list[int]] = [[]]
    rows = 0
    for text, text_rows in enumerate(rows_of):
        if parts[-1] and (rows + len(text_rows)) * width > max_tokens:
            parts.append([])
            rows = 0
        parts[-1].append(text)
        rows += len(text_rows)
    return [_select(batch, texts, rows_of) for texts in parts]


def _rows_by_text(owner: torch.Tensor, n_texts: int) -> list[list[int]]:
    rows: list[list[int]] = [[] for _ in range(n_texts)]
    for row, text in enumerate(owner.tolist()):
        rows[text].append(row)
    return rows


def _select(batch: dict[str, torch.Tensor], texts: list[int], rows_of: list[list[int]]) -> dict[str, torch.Tensor]:
    rows = torch.tensor([r for t in texts for r in rows_of[t]])
    mask = batch["attention_mask"][rows]
    keep = int(mask.sum(1).max())  # right padding: columns past the part's longest row are all pad
    part = {"input_ids": batch["input_ids"][rows, :keep], "attention_mask": mask[:, :keep]}
    part["labels"] = batch["labels"][torch.tensor(texts)]
    if "text_index" in batch:  # renumber each kept text 0.. in part order
        new_index = {t: i for i, t in enumerate(texts)}
        part["text_index"] = torch.tensor([new_index[t] for t in texts for _ in rows_of[t]])
    return part


def accumulated_loss(
    parts: Sequence[dict[str, torch.Tensor]],
    loss_of: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    params: Sequence[torch.nn.Parameter],
    loss_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The batch's mean loss, with its gradient with respect to `params` computed part by part.

    loss_of(part) is the part's `mean`-reduced loss. Returns a scalar equal to the whole batch's
    loss whose backward() adds the batch's gradient (times the incoming gradient, e.g. Lightning's
    1 / accumulate_grad_batches) to each parameter's .grad.
    """
    denominators = [_denominator(p["labels"], loss_weights) for p in parts]
    total = sum(denominators)
    grads: list[torch.Tensor | None] = [None] * len(params)
    loss = torch.zeros(())
    for part, share in zip(parts, denominators):
        part_loss = loss_of(part) * (share / total)
        part_grads = torch.autograd.grad(part_loss, params, allow_unused=True)
        grads = [g if pg is None else pg if g is None else g + pg for g, pg in zip(grads, part_grads)]
        loss = loss + part_loss.detach().float().cpu()
    return _PrecomputedGradient.apply(loss.to(params[0].device), tuple(grads), *params)


def _denominator(labels: torch.Tensor, loss_weights: torch.Tensor | None) -> float:
    """What F.cross_entropy's `mean` divides a part's summed loss by: its rows, or their labels' weights."""
    return float(labels.numel()) if loss_weights is None else float(loss_weights[labels].sum())


class _PrecomputedGradient(torch.autograd.Function):
    """A loss value whose gradient was computed already: backward() hands it to the parameters."""

    @staticmethod
    def forward(ctx, loss: torch.Tensor, grads: tuple, *params: torch.Tensor) -> torch.Tensor:
        ctx.grads = grads
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple:
        return (None, None, *(None if g is None else g * grad_output for g in ctx.grads))
