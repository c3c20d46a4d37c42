"""Measurements on one domain's test rows: logits, accuracy / macro-F1, batched latency, switch cost."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from transformers import PreTrainedTokenizerBase

from lora_lab.data.batching import LengthGroupedBatchSampler, PadCollator, TokenizedSplit
from lora_lab.errors import DataError
from lora_lab.models.metrics import summary_metrics
from lora_lab.models.multi_adapter import MultiAdapterClassifier


@dataclass
class DomainRows:
    """One domain's test rows, tokenized as every job tokenized them, with their gold labels."""

    data: TokenizedSplit
    labels: list[str]


def domain_test_rows(
    cfg: DictConfig, tokenizer: PreTrainedTokenizerBase, column: str, domains: list[str]
) -> dict[str, DomainRows]:
    """Each domain's rows of the ALL-domains test split (cfg.dataset, no subset).

    A per-domain job (dataset.subset={column: d}) filters the same split after the same split
    seed, so its test rows are these rows: every model is scored on identical rows.
    """
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    datamodule.setup("test")
    split, tokenized = datamodule.splits["test"], datamodule.tokenized["test"]
    if column not in split.extra:
        raise DataError(f"domain_column={column!r}: the test rows carry only {sorted(split.extra)}")
    values = [str(value) for value in split.extra[column]]
    out = {}
    for domain in domains:
        keep = [i for i, value in enumerate(values) if value == domain]
        if not keep:
            raise DataError(f"domain {domain!r} has no test rows (column {column!r} holds {sorted(set(values))})")
        data = TokenizedSplit([tokenized.input_ids[i] for i in keep], [tokenized.labels[i] for i in keep])
        out[domain] = DomainRows(data, [split.labels[i] for i in keep])
    return out


@torch.inference_mode()
def predict(model: nn.Module, rows: DomainRows, batch_size: int, pad_token_id: int) -> tuple[torch.Tensor, float]:
    """(rows, labels) logits in row order, and the seconds the forward passes took.

    Batches are length-sorted, as the jobs' test loaders cut them (same batch size, same rows:
    the same padding, hence the same logits). Collation happens before the clock starts.
    """
    model.eval()
    collate = PadCollator(pad_token_id)
    batches = [
        (idx, collate([rows.data[i] for i in idx]))
        for idx in LengthGroupedBatchSampler(rows.data.lengths, batch_size, shuffle=False)
    ]
    outputs = []
    start = time.perf_counter()
    for _, batch in batches:
        outputs.append(model(batch["input_ids"], batch["attention_mask"]).float())
    seconds = time.perf_counter() - start
    logits = torch.empty(len(rows.labels), outputs[0].shape[-1])
    for (idx, _), out in zip(batches, outputs):
        logits[idx] = out
    return logits, seconds


def scores(logits: torch.Tensor, id2label: dict[int, str], gold: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 in the model's label map, as the jobs' test metrics compute them."""
    label_ids = {label: i for i, label in id2label.items()}
    unknown = sorted(set(gold) - set(label_ids))
    if unknown:
        raise DataError(f"test labels {unknown} are outside the model's label map {sorted(label_ids)}")
    result = summary_metrics(len(id2label), "test")(logits.argmax(-1), torch.tensor([label_ids[y] for y in gold]))
    return {"acc": float(result["test/acc"]), "f1_macro": float(result["test/f1_macro"])}


def switch_ms(model: MultiAdapterClassifier, repeats: int) -> float:
    """Mean milliseconds of one use() call (set_adapter + head swap), each call a real switch."""
    names = model.adapter_names
    if len(names) < 2:
        raise ValueError(f"switch cost needs two adapters or more; loaded: {names}")
    # Cycle through the names starting after the active one, so no call re-selects the active adapter.
    offset = names.index(model.active) + 1
    order = [names[(offset + i) % len(names)] for i in range(repeats)]
    start = time.perf_counter()
    for name in order:
        model.use(name)
    return 1000 * (time.perf_counter() - start) / repeats
