"""Frozen text embeddings for the embedding regimes (zeroshot, fewshot, contrastive), and the
linear head they write their fitted weights into.

The embedding is `classifier.embed(...)`: exactly what the head reads, so a head fitted on these
vectors predicts the same through `classifier(...)`, merged/ and adapter/ alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from lora_lab.data.batching import PadCollator, Row, average_windows, flatten_windows, length_batches
from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier

if TYPE_CHECKING:
    from lora_lab.data.datamodule import TextClassificationDataModule


def has_embeddings(classifier: Classifier) -> bool:
    """Whether the classifier exposes a pooled embedding (HF's stock cls head does not)."""
    return type(classifier).embed is not Classifier.embed


def require_embeddings(classifier: Classifier, regime: str) -> None:
    """Fail in apply(), before any work, where the classifier has no pooled embedding to fit on."""
    if not has_embeddings(classifier):
        raise ConfigError(
            f"regime={regime} fits its head on pooled text embeddings, but this {type(classifier).__name__} "
            "is HF's stock head (backbone.pooling=cls) and exposes none; set backbone.pooling=mean "
            "(encoders; right for sentence-embedding models such as MiniLM) or backbone.pooling=last (decoders)"
        )


def head_linear(classifier: Classifier) -> nn.Linear:
    """The head's one linear layer, whose weight and bias a fitted head replaces."""
    linears = [m for m in classifier.head().modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1:
        raise TypeError(
            f"{type(classifier).__name__}'s head has {len(linears)} linear layers; a fitted head needs exactly one"
        )
    return linears[0]


def write_head(classifier: Classifier, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Make the head compute logits = embedding @ weight.T + bias (dropout is off in eval mode)."""
    linear = head_linear(classifier)
    if weight.shape != linear.weight.shape or bias.shape != linear.bias.shape:
        raise ValueError(
            f"fitted head has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}; "
            f"the classifier's head needs {tuple(linear.weight.shape)} and {tuple(linear.bias.shape)}"
        )
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)


def embed_rows(classifier: Classifier, input_ids: Sequence[Row], pad_token_id: int, batch_size: int) -> torch.Tensor:
    """(n, hidden) embeddings of token-id rows, in the given order; eval mode, no gradients.

    Rows are embedded in order of length, so each batch pads to similar lengths, then put back in order.
    A chunked text (data.long_text=chunk) is the mean of its windows' embeddings: a linear head on
    it gives the mean of the windows' logits, what the module and the Predictor compute.
    """
    windows, owner = flatten_windows(input_ids)
    device = next(classifier.parameters()).device
    out: torch.Tensor | None = None
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            for rows, batch in length_batches(windows, batch_size, PadCollator(pad_token_id)):
                vectors = classifier.embed(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float()
                if out is None:
                    out = torch.empty(len(windows), vectors.shape[1])
                out[rows] = vectors.cpu()
    finally:
        classifier.train(was_training)
    if out is None:
        raise ValueError("nothing to embed: no rows given")
    return average_windows(out, owner, len(input_ids))


def embed_split(
    classifier: Classifier,
    datamodule: TextClassificationDataModule,
    split: str = "train",
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings, label ids) of a tokenized split (the training rows shots_per_class kept), in
    batches of batch_size rows (None: the datamodule's eval_batch_size)."""
    data = datamodule.tokenized[split]
    rows = batch_size or datamodule.eval_batch_size
    vectors = embed_rows(classifier, data.input_ids, datamodule.tokenizer.pad_token_id, rows)
    return vectors, torch.tensor(data.labels, dtype=torch.long)


def embed_texts(classifier: Classifier, datamodule: TextClassificationDataModule, texts: Sequence[str]) -> torch.Tensor:
    """(n, hidden) embeddings of raw texts, tokenized as the datamodule tokenizes its splits."""
    ids = datamodule.truncation.encode(datamodule.tokenizer, texts)[0]
    return embed_rows(classifier, ids, datamodule.tokenizer.pad_token_id, datamodule.eval_batch_size)
