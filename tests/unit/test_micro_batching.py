"""A long batch trained in passes of at most module.max_tokens_per_pass tokens: same gradient, same steps."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import seed_everything

from lora_lab.models.micro_batching import accumulated_loss, split_batch


def long_batch(chunked: bool = False) -> dict[str, torch.Tensor]:
    """Eight texts of up to 10 tokens over three of the tiny job's five labels; chunked: texts 2 and 5 have
    two windows."""
    g = torch.Generator().manual_seed(0)
    owner = [0, 1, 2, 2, 3, 4, 5, 5, 6, 7] if chunked else list(range(8))
    ids = torch.randint(5, 1000, (len(owner), 10), generator=g)
    mask = torch.ones_like(ids)
    for row, length in enumerate([10, 9, 7, 10, 6, 5, 4, 8, 3, 2][: len(owner)]):
        mask[row, length:] = 0
        ids[row, length:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])}
    if chunked:
        batch["text_index"] = torch.tensor(owner)
    return batch


@pytest.mark.parametrize("chunked", [False, True])
def test_parts_keep_a_texts_windows_together_and_stay_within_the_budget(chunked: bool):
    batch = long_batch(chunked)
    parts = split_batch(batch, max_tokens=30)  # 3 rows of the batch's width 10
    assert len(parts) > 1
    labels = torch.cat([p["labels"] for p in parts])
    assert labels.tolist() == batch["labels"].tolist()  # every text once, in order
    rows = sum(len(p["input_ids"]) for p in parts)
    assert rows == len(batch["input_ids"])
    for part in parts:
        assert len(part["input_ids"]) * 10 <= 30
        assert part["attention_mask"][:, -1].any()  # trimmed to the part's own longest row
        if chunked:
            assert part["text_index"].max() + 1 == part["labels"].numel()
    # Batches within the budget pass through untouched.
    assert split_batch(batch, max_tokens=100) == [batch]
    assert split_batch(batch, max_tokens=None) == [batch]


@pytest.mark.parametrize(
    ("chunked", "weights", "smoothing"),
    [(False, None, 0.0), (False, [1.0, 3.0, 0.5, 2.0, 1.5], 0.1), (True, None, 0.0)],
)
def test_the_passes_gradient_is_the_whole_batchs(tiny_job, chunked: bool, weights, smoothing: float):
    """The summed gradient of the parts equals one pass over the batch (dropout off so both see one model)."""
    classifier = tiny_job().classifier.eval()
    params = [p for p in classifier.parameters() if p.requires_grad]
    batch = long_batch(chunked)
    w = torch.tensor(weights) if weights else None

    def loss_of(b: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = classifier(b["input_ids"], b["attention_mask"])
        if "text_index" in b:
            from lora_lab.data.batching import average_windows

            logits = average_windows(logits, b["text_index"], b["labels"].numel())
        return torch.nn.functional.cross_entropy(logits, b["labels"], weight=w, label_smoothing=smoothing)

    whole = loss_of(batch)
    whole.backward()
    expected = [None if p.grad is None else p.grad.clone() for p in params]  # None: a parameter no row reaches
    classifier.zero_grad()

    parts = split_batch(batch, max_tokens=30)
    loss = accumulated_loss(parts, loss_of, params, w)
    assert all(p.grad is None for p in params)  # nothing handed over before backward()
    (loss * 0.5).backward()  # Lightning scales by 1 / accumulate_grad_batches
    assert loss.item() == pytest.approx(whole.item(), rel=1e-5)
    assert sum(want is not None for want in expected) > 1
    for p, want in zip(params, expected):
        if want is None:
            assert p.grad is None
        else:
            torch.testing.assert_close(p.grad, 0.5 * want, rtol=1e-4, atol=1e-6)


def test_a_job_trained_in_passes_ends_with_the_weights_of_one_pass(tiny_job, monkeypatch):
    """Two optimiser steps through Lightning's loop (backward, accumulation, AdamW): the same weights."""
    import lora_lab.models.module as module

    passes: list[int] = []
    monkeypatch.setattr(module, "split_batch", lambda b, n: passes.append(len(parts := split_batch(b, n))) or parts)
    trained = []
    for budget in ("null", "64"):
        seed_everything(0)
        job = tiny_job(
            f"module.max_tokens_per_pass={budget}",
            "trainer.max_steps=2",
            # fp32 on every CPU: where `cpu_precision` picks bf16 autocast (AMX), a pass's bf16 matmuls
            # round differently from the whole batch's (~2e-5 here), which is not what this test compares.
            "trainer.precision=32-true",
            "trainer.limit_val_batches=0",
            "callbacks.model_checkpoint=null",
            "+backbone.random_init.hidden_dropout_prob=0.0",
            "+backbone.random_init.attention_probs_dropout_prob=0.0",
            "+backbone.head_dropout=0.0",
            # LP-FT's embedding pass batches rows by the same budget, and a batch padded otherwise moves
            # the probe's fit by ~1e-5: the passes of training are what this test compares.
            "module.head_init=null",
        )
        job.trainer.fit(job.module, datamodule=job.datamodule)
        trained.append({n: p.detach().clone() for n, p in job.classifier.named_parameters() if p.requires_grad})
    assert passes[:2] == [1, 1] and min(passes[2:]) > 1  # one pass per batch, then several
    assert trained[0].keys() == trained[1].keys()
    moved = 0
    for name in trained[0]:
        torch.testing.assert_close(trained[1][name], trained[0][name], rtol=1e-4, atol=1e-6)
        moved += 1
    assert moved > 0


@pytest.mark.parametrize("chunked", [False, True])
def test_evaluation_in_passes_gives_the_logits_of_one_pass(tiny_job, chunked: bool):
    module = tiny_job("module.max_tokens_per_pass=8").module.eval()  # passes of 4 x 8 tokens: several per batch
    batch = long_batch(chunked)
    assert len(split_batch(batch, 32)) > 1
    with torch.no_grad():
        whole = module._text_logits(batch)
        torch.testing.assert_close(module.eval_logits(batch), whole, rtol=1e-5, atol=1e-6)
