"""regime=contrastive selects its body on validation (lora_lab/regimes/val_checks.py): the checks
leave training as it was, the shipped model is the best check's, and patience stops stage 1."""

from __future__ import annotations

import itertools

import pytest
import torch

from lora_lab.config.validation import validate
from lora_lab.errors import ConfigError
from lora_lab.models.embedding import embed_split, head_linear

# 20 rows x 2 iterations x 2 pairs = 80 examples, 8 steps of 10.
SHOTS = ("shots_per_class=4", "regime.num_iterations=2", "regime.batch_size=10", "regime.learning_rate=1e-3")


def _body(classifier) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in classifier.transformer.named_parameters()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def _scripted(job, scores) -> None:
    """Replace the job's validation accuracy by a scripted sequence (one value per check); the head
    that goes with it is still fitted on the body of the moment."""
    values, real = iter(scores), job.regime._validation_score

    def scripted(classifier, datamodule):
        score = real(classifier, datamodule)
        return lambda: (next(values), score()[1])

    job.regime._validation_score = scripted


def test_checks_leave_training_as_it_was_and_a_last_best_keeps_the_last_body(tiny_job):
    plain = tiny_job("regime=contrastive", "regime.val_checks=0", *SHOTS)
    plain.regime.prepare(plain.classifier, plain.datamodule)
    assert plain.regime.results() == {}

    checked = tiny_job("regime=contrastive", "regime.val_checks=4", "regime.patience=null", *SHOTS)
    pretrained = _body(checked.classifier)
    _scripted(checked, itertools.count())  # every check better than the last: the last body wins
    checked.regime.prepare(checked.classifier, checked.datamodule)
    results = checked.regime.results()
    assert [step for step, _ in results["contrastive/val_checks"]] == [0, 2, 4, 6, 8]
    assert results["contrastive/selected_step"] == 8 and results["model_selection"] == "best_val_check"
    # Scoring ran in eval mode between steps and drew no random numbers: the same 8 steps, bit for bit.
    assert _same(_body(checked.classifier), _body(plain.classifier))
    assert not _same(_body(checked.classifier), pretrained)


def test_no_gain_after_the_start_stops_early_and_ships_the_pretrained_body(tiny_job):
    job = tiny_job("regime=contrastive", "regime.val_checks=8", "regime.patience=2", *SHOTS)
    pretrained = _body(job.classifier)
    _scripted(job, [0.9, 0.5, 0.5, 0.5])
    job.regime.prepare(job.classifier, job.datamodule)
    results = job.regime.results()
    # Checks at steps 1, 2: two without a gain on step 0's 0.9, so stage 1 stops after step 2 of 8.
    assert results["contrastive/val_checks"] == [[0, 0.9], [1, 0.5], [2, 0.5]]
    assert results["contrastive/selected_step"] == 0
    assert _same(_body(job.classifier), pretrained)
    # The shipped head is step 0's, kept from its check, not the last check's (fitted on step 2's body).
    weight, bias = job.regime._fit_head(job.classifier, job.datamodule)
    shipped = head_linear(job.classifier)
    assert torch.allclose(shipped.weight, weight) and torch.allclose(shipped.bias, bias)


def test_the_shipped_model_scores_the_best_checks_validation_accuracy(tiny_job):
    job = tiny_job("regime=contrastive", "regime.val_checks=3", "regime.patience=null", *SHOTS)
    job.regime.prepare(job.classifier, job.datamodule)
    history = job.regime.results()["contrastive/val_checks"]
    best = max(value for _, value in history)
    # The first check reaching the best is the one kept (as ModelCheckpoint keeps the first best).
    assert job.regime.results()["contrastive/selected_step"] == next(step for step, value in history if value == best)
    x, y = embed_split(job.classifier, job.datamodule, "validation")
    shipped = (head_linear(job.classifier)(x).argmax(1) == y).float().mean().item()
    assert shipped == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize(
    "override,match", [("regime.val_checks=-1", "val_checks=-1"), ("regime.patience=0", "patience=0")]
)
def test_meaningless_check_settings_are_refused_before_any_model_loads(tiny_cfg, override: str, match: str):
    with pytest.raises(ConfigError, match=match):
        validate(tiny_cfg("regime=contrastive", override))
