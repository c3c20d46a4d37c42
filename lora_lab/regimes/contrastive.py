"""Contrastive fine-tuning then a fitted head: SetFit (Tunstall et al., 2022).

prepare() runs both stages, timed as training time (no gradient epochs follow):
1. the encoder body learns from pairs or triplets of labelled training rows (`loss`: cosine |
   infonce | triplet, contrastive_objectives.py), in a short plain-torch loop, fp32; the body is
   trained in full (`body: full`) or through LoRA (`body: lora`, the lora regime's PEFT config);
2. the head is a logistic regression on the new embeddings (fitted_heads.py, as regime=fewshot).
Stage 1 selects its body on validation (val_checks.py): before the first step and at val_checks
steps, a head fitted on the training rows is scored on the validation split; the best body is
kept, the pretrained one included, and patience checks without a gain end stage 1 early.

Artifacts: body=lora -> adapter/ is the PEFT adapter + head (like regime=lora), merged/ folds it
in; body=full -> the adapter would be the whole encoder, so merged/ only (like regime=full).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import get_scheduler

from lora_lab.data.batching import LengthGroupedBatchSampler, PadCollator
from lora_lab.errors import ConfigError, check_positive_int
from lora_lab.models.classifier import Classifier
from lora_lab.models.embedding import embed_split, require_embeddings, write_head
from lora_lab.models.fitted_heads import logistic_regression_head
from lora_lab.regimes.base import Regime
from lora_lab.regimes.contrastive_objectives import Example, Objective, make_objective
from lora_lab.regimes.lora import LoRA
from lora_lab.regimes.val_checks import ValidationChecks, check_settings

if TYPE_CHECKING:
    from lora_lab.data.batching import TokenizedSplit
    from lora_lab.data.datamodule import TextClassificationDataModule

log = logging.getLogger(__name__)
BODIES = ("full", "lora")
# sentence-transformers' fit() defaults, which SetFit trains with: AdamW weight decay 0.01,
# gradients clipped to norm 1, linear warmup over the first 10% of steps then linear decay.
WEIGHT_DECAY, MAX_GRAD_NORM, WARMUP_RATIO = 0.01, 1.0, 0.1


class Contrastive(Regime):
    trains_by_gradient = False

    def __init__(
        self,
        name: str,
        learning_rate: float,
        loss: str = "cosine",
        body: str = "full",
        num_iterations: int = 20,
        epochs: int = 1,
        batch_size: int = 16,
        temperature: float = 0.05,
        margin: float = 0.25,
        r: int = 8,
        target_modules: list[str] | str | None = None,
        lora_alpha: float | None = None,
        lora_dropout: float = 0.05,
        C: float = 1.0,
        max_iter: int = 1000,
        seed: int = 0,
        head_learning_rate: float | None = None,
        normalize: bool = True,
        val_checks: int = 10,
        patience: int | None = 3,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        check_settings(val_checks, patience)
        if body not in BODIES:
            raise ConfigError(f"regime.body={body!r}: choose one of {BODIES}")
        for key, value in (("num_iterations", num_iterations), ("epochs", epochs), ("batch_size", batch_size)):
            check_positive_int(f"regime.{key}", value)
        self.objective: Objective = make_objective(loss, temperature, margin)
        self.loss, self.body = loss, body
        self.num_iterations, self.epochs, self.batch_size = num_iterations, epochs, batch_size
        self.C, self.max_iter, self.seed, self.normalize = C, max_iter, seed, normalize
        self.val_checks, self.patience = val_checks, patience
        self.checks: ValidationChecks | None = None  # set by train_body when it selects on validation
        # body=lora: the lora regime's PEFT config, save, load and merge, as they are.
        self.lora = (
            LoRA(
                "lora",
                learning_rate,
                r=r,
                target_modules=target_modules,
                lora_alpha=lora_alpha,
                lora_dropout=lora_dropout,
            )
            if body == "lora"
            else None
        )
        # Instance-level: whether a deployable adapter exists depends on the body setting.
        self.has_adapter = self.lora is not None
        self.loss_history: list[float] = []  # mean contrastive loss of each epoch

    def apply(self, classifier: Classifier) -> None:
        require_embeddings(classifier, self.name)
        classifier.normalize = self.normalize  # the head reads (and the body learns) unit-length embeddings
        if self.lora is not None:
            self.lora.apply(classifier)  # LoRA matrices train, the base encoder freezes; the head is fitted
        else:
            classifier.requires_grad_(True)

    def prepare(self, classifier: Classifier, datamodule: TextClassificationDataModule) -> None:
        has_validation = len(datamodule.tokenized.get("validation") or ()) > 0
        score = self._validation_score(classifier, datamodule) if self.val_checks and has_validation else None
        self.train_body(classifier, datamodule.tokenized["train"], datamodule.tokenizer.pad_token_id, score)
        # The best check fitted its head on the body restore_best() put back: the same fit, done.
        write_head(
            classifier, *(self.checks.best_kept if self.checks is not None else self._fit_head(classifier, datamodule))
        )

    def _fit_head(
        self, classifier: Classifier, datamodule: TextClassificationDataModule
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2 on the body as it is: (weight, bias) of the logistic regression on the training rows."""
        x, y = embed_split(classifier, datamodule, "train")
        return logistic_regression_head(x, y, len(classifier.id2label), self.C, self.max_iter, self.seed)

    def _validation_score(
        self, classifier: Classifier, datamodule: TextClassificationDataModule
    ) -> Callable[[], tuple[float, tuple[torch.Tensor, torch.Tensor]]]:
        """Validation accuracy of what prepare() would ship now (the body as it is, its fitted head), and that head."""

        def score() -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
            weight, bias = self._fit_head(classifier, datamodule)
            x, y = embed_split(classifier, datamodule, "validation")
            return ((x @ weight.T + bias).argmax(1) == y).float().mean().item(), (weight, bias)

        return score

    def results(self) -> dict[str, Any]:
        if self.checks is None:
            return {}
        return {
            "model_selection": "best_val_check",
            "contrastive/val_checks": [[step, value] for step, value in self.checks.history],
            "contrastive/selected_step": self.checks.best_step,
        }

    def train_body(
        self,
        classifier: Classifier,
        data: TokenizedSplit,
        pad_token_id: int,
        score: Callable[[], tuple[float, Any]] | None = None,
    ) -> None:
        """Stage 1: the objective's examples, shuffled each epoch, in random batches of batch_size examples.

        Not length-grouped, unlike the datamodule's batches, though a random batch pads to its
        longest text: an example's length is its longest row's, and each training row anchors
        2 x num_iterations examples, so sorting by length puts the examples of the few longest
        rows together. On FPB all-agree at 8 shots (24 rows, 960 pairs, batches of 16), grouped
        batches held 4 to 12 distinct rows (median 12) and 2 to 16 positive pairs; random ones hold
        13 or more (median 18) and 4 to 11 positives, like SetFit's random batches.

        With `score` (validation accuracy now, and its head), ValidationChecks selects the body and may stop early.
        Scoring runs in eval mode and draws no random numbers: the steps it lets run are the same.
        """
        examples = self.objective.examples(data.labels, self.num_iterations, random.Random(self.seed))
        sampler = LengthGroupedBatchSampler(
            [0] * len(examples), self.batch_size, shuffle=True, seed=self.seed, group=False
        )
        params = [p for p in classifier.transformer.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=WEIGHT_DECAY)
        total = self.epochs * len(sampler)
        scheduler = get_scheduler(
            "linear", optimizer, num_warmup_steps=int(WARMUP_RATIO * total), num_training_steps=total
        )
        log.info(
            "Contrastive body training (%s, body=%s): %d examples, %d steps", self.loss, self.body, len(examples), total
        )
        collate = PadCollator(pad_token_id)
        report_every = max(1, total // 10)  # a tenth of the run: the loop runs minutes on a CPU
        named = {n: p for n, p in classifier.transformer.named_parameters() if p.requires_grad}
        self.checks = ValidationChecks(named, total, self.val_checks, self.patience, score) if score else None
        was_training = classifier.training
        classifier.train()  # dropout on, as SetFit trains the body
        step, stop = 0, False
        try:
            for epoch in range(self.epochs):
                sampler.set_epoch(epoch)  # a new (seeded) order each epoch
                losses = []
                for batch in sampler:
                    losses.append(self._backward(classifier, [examples[i] for i in batch], data, collate, params))
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    if len(losses) % report_every == 0:
                        recent = losses[-report_every:]
                        log.info(
                            "Contrastive epoch %d, step %d: mean loss of the last %d steps %.4f",
                            epoch,
                            len(losses),
                            len(recent),
                            sum(recent) / len(recent),
                        )
                    if self.checks is not None and (stop := self.checks.after_step(step)):
                        log.info(
                            "Contrastive: %d checks without a gain, stopped at step %d of %d",
                            self.patience,
                            step,
                            total,
                        )
                        break
                self.loss_history.append(sum(losses) / len(losses))
                log.info("Contrastive epoch %d: mean loss %.4f", epoch, self.loss_history[-1])
                if stop:
                    break
        finally:
            classifier.train(was_training)
        if self.checks is not None:
            self.checks.restore_best()

    def _backward(
        self,
        classifier: Classifier,
        batch: list[Example],
        data: TokenizedSplit,
        collate: PadCollator,
        params: list[torch.nn.Parameter],
    ) -> float:
        """Loss and (clipped) gradients of a batch of examples: each distinct row through the encoder
        once, its embedding used by every example that holds it (as in-batch-negative losses embed
        each sentence once). Few-shot rows recur: FPB at 16 shots has 48 rows, so a batch of 16 pairs
        (32 slots) holds about 48 * (1 - (47/48)^32) = 23.5 distinct rows, 27% fewer sequences than
        slots; at 8 shots (24 rows) about 18, 44% fewer. Banking77's 616 rows hardly recur (31 of 32).
        A recurring row shares one dropout mask within the batch; pairs never join a row to itself."""
        rows = [row for example in batch for row in example]
        distinct = list(dict.fromkeys(rows))
        slot = {row: k for k, row in enumerate(distinct)}
        padded = collate([(data.input_ids[row], data.labels[row]) for row in distinct])
        device = next(classifier.parameters()).device
        m = self.objective.rows_per_example
        embeddings = classifier.embed(padded["input_ids"].to(device), padded["attention_mask"].to(device)).float()
        where = torch.tensor([slot[row] for row in rows], device=device)
        loss = self.objective.loss(
            embeddings[where].view(len(batch), m, -1), padded["labels"].to(device)[where].view(len(batch), m)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        return loss.item()

    def save_adapter(self, classifier: Classifier, out_dir: Path) -> None:
        self._require_lora("save_adapter").save_adapter(classifier, out_dir)

    def load_adapter(self, classifier: Classifier, adapter_dir: Path) -> None:
        self._require_lora("load_adapter").load_adapter(classifier, adapter_dir)

    def merge(self, classifier: Classifier) -> None:
        if self.lora is not None:
            self.lora.merge(classifier)

    def _require_lora(self, what: str) -> LoRA:
        if self.lora is None:
            raise NotImplementedError(
                f"regime=contrastive with body=full has no adapter ({what}): the whole encoder changed; use merged/"
            )
        return self.lora
