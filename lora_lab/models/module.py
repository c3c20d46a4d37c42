"""The LightningModule: a Classifier (already shaped by its Regime), loss, metrics, optimizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchmetrics import MaxMetric
from transformers import get_scheduler

from lora_lab.data.batching import average_windows
from lora_lab.errors import ConfigError, check_positive_int, check_unit_interval
from lora_lab.models.classifier import Classifier
from lora_lab.models.head_init import init_head, resolve_head_init
from lora_lab.models.metrics import detail_metrics, summary_metrics
from lora_lab.models.micro_batching import accumulated_loss, split_batch


class FitHooks(Protocol):
    """What a regime may do while it trains (lora_lab.regimes.base.Regime has both; most do nothing)."""

    def on_fit_start(self, classifier: Classifier, total_steps: int) -> None: ...

    def after_optimizer_step(self, classifier: Classifier, global_step: int) -> None: ...


class ClassifierModule(pl.LightningModule):
    """Trains whatever parameters the regime left trainable; knows nothing about the regime."""

    def __init__(
        self,
        classifier: Classifier,
        learning_rate: float,
        hooks: FitHooks | None = None,
        head_learning_rate: float | None = None,
        weight_decay: float = 0.01,
        scheduler: str = "linear",
        warmup_ratio: float = 0.06,
        class_weights: str | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        head_init: str | None = None,
        compile: bool = False,
        max_tokens_per_pass: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["classifier", "hooks"])
        # The regime's training-time hooks (most regimes have none; AdaLoRA reallocates ranks).
        self.hooks = hooks
        self._steps_seen = 0
        # from_pretrained returns eval mode and Lightning keeps the mode it finds: switch dropout on.
        self.classifier = classifier.train()
        num_labels = len(classifier.id2label)
        if isinstance(class_weights, str) and class_weights != "inverse_frequency":
            raise ConfigError(
                f"module.class_weights={class_weights!r}: use null, inverse_frequency or a list of floats"
            )
        if (
            isinstance(class_weights, Sequence)
            and not isinstance(class_weights, str)
            and len(class_weights) != num_labels
        ):
            raise ConfigError(f"module.class_weights has {len(class_weights)} weights for {num_labels} labels")
        check_unit_interval("module.label_smoothing", label_smoothing, example="e.g. 0.1")
        if max_tokens_per_pass is not None:
            check_positive_int("module.max_tokens_per_pass", max_tokens_per_pass, example="e.g. 4096, or null")
        # What fits the head before training and why (module.head_init=auto: LP-FT where it applies).
        self.head_init, self.head_init_why = resolve_head_init(classifier, head_init)
        self.register_buffer("loss_weights", None, persistent=False)
        # torch.compile (inductor) fuses the elementwise ops around the matmuls; dynamic=True so
        # length-grouped batches of every width share one graph instead of recompiling per width.
        # Compiles the forward function, not the module, so state dicts keep their plain names.
        self._forward = torch.compile(classifier.forward, dynamic=True) if compile else classifier.forward
        self.val_metrics = summary_metrics(num_labels, "val")
        self.val_acc_best = MaxMetric()
        # Every validation score of the epoch with the best val/acc (the first such epoch, the one
        # ModelCheckpoint keeps): metrics.json's val/f1_macro etc. describe the model that is tested.
        self.val_at_best: dict[str, float] = {}
        self.test_metrics = summary_metrics(num_labels, "test")
        self.test_details = detail_metrics(num_labels)
        self.test_results: dict[str, list] = {}
        # Opt-in (lora_lab.eval sets a list): each test batch's softmax probabilities, in loader order.
        self.test_probs: list[torch.Tensor] | None = None

    def setup(self, stage: str) -> None:
        weights = self.hparams.class_weights
        if weights == "inverse_frequency":
            # n / (k * count): a class seen half as often weighs twice as much; balanced data -> all 1.
            labels = torch.tensor(self.trainer.datamodule.tokenized["train"].labels)
            counts = torch.bincount(labels, minlength=len(self.classifier.id2label)).float()
            weights = (labels.numel() / (counts.numel() * counts.clamp(min=1))).tolist()
        if weights is not None:
            self.loss_weights = torch.tensor(list(weights), dtype=torch.float32, device=self.device)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["val_at_best"] = self.val_at_best  # a resumed job still knows its best epoch's scores

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.val_at_best = checkpoint.get("val_at_best", {})
        # MaxMetric's state is not in the state dict: a job resumed after a validated epoch starts it
        # from that epoch's best, else val/acc_best would be the best of the resumed epochs only.
        if "val/acc" in self.val_at_best:
            self.val_acc_best.update(torch.tensor(self.val_at_best["val/acc"]))

    def on_fit_start(self) -> None:
        # After the callbacks' on_fit_start, so the ResourceMonitor times the head fit as training.
        # Not on a resume: Lightning restored the trained head before this hook, and a refit would overwrite it.
        if self.head_init is not None and self.trainer.ckpt_path is None:
            if (datamodule := self.trainer.datamodule) is None:
                raise RuntimeError(
                    f"module.head_init={self.head_init} fits on a datamodule's tokenized training rows; "
                    "fit with datamodule="
                )
            # Rows a pass within the evaluation budget (eval_logits): 16 reviews of 512 tokens at 2048.
            rows, tokens = datamodule.eval_batch_size, self.eval_tokens_per_pass
            if tokens is not None and isinstance(datamodule.max_length, int):
                rows = max(1, min(rows, tokens // datamodule.max_length))
            init_head(self.classifier, datamodule, self.head_init, seed=datamodule.seed, batch_size=rows)
        if self.hooks is not None:
            self.hooks.on_fit_start(self.classifier, int(self.trainer.estimated_stepping_batches))

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        # After the optimizer step, gradients still in place (Lightning zeroes them just before
        # the next backward, so on_before_zero_grad would run between a forward and its backward).
        # global_step counts optimizer steps: it moves only when this batch completed one.
        if self.hooks is not None and self.global_step != self._steps_seen:
            self._steps_seen = self.global_step
            self.hooks.after_optimizer_step(self.classifier, self.global_step - 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._forward(input_ids, attention_mask)

    def _text_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"]).float()
        if "text_index" in batch:  # data.long_text=chunk: a row per window; a text's logits are their mean
            logits = average_windows(logits, batch["text_index"], batch["labels"].numel())
        return logits

    def eval_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(texts, labels) logits of an evaluation batch, in passes of at most 4 x max_tokens_per_pass tokens.

        Without gradients no activation outlives its layer, so a pass holds one layer's transients, not
        six layers' saved activations as in training: 4x the training budget still peaks below it, while
        an eval batch of 128 reviews x 512 tokens in one pass would not."""
        return torch.cat([self._text_logits(part) for part in split_batch(batch, self.eval_tokens_per_pass)])

    @property
    def eval_tokens_per_pass(self) -> int | None:
        """4 x module.max_tokens_per_pass (None: no bound): evaluation's and LP-FT's embedding pass."""
        budget = self.hparams.max_tokens_per_pass
        return budget and 4 * budget

    def _loss_and_logits(
        self, batch: dict[str, torch.Tensor], smoothing: float = 0.0, evaluating: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.eval_logits(batch) if evaluating else self._text_logits(batch)
        loss = F.cross_entropy(logits, batch["labels"], weight=self.loss_weights, label_smoothing=smoothing)
        return loss, logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Label smoothing shapes training only: val/loss stays the plain cross-entropy, comparable across runs.
        smoothing = self.hparams.label_smoothing
        parts = split_batch(batch, self.hparams.max_tokens_per_pass)
        if len(parts) == 1:
            loss, _ = self._loss_and_logits(batch, smoothing)
        else:  # a long batch: its gradient pass by pass, bounding memory (models/micro_batching.py)
            params = [p for p in self.classifier.parameters() if p.requires_grad]
            loss = accumulated_loss(
                parts, lambda part: self._loss_and_logits(part, smoothing)[0], params, self.loss_weights
            )
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch["labels"].numel())
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._loss_and_logits(batch, evaluating=True)
        self.val_metrics.update(logits.argmax(-1), batch["labels"])
        # sync_dist: under DDP each rank sees its own rows; Lightning averages the ranks' losses weighted by rows.
        self.log("val/loss", loss, on_epoch=True, batch_size=batch["labels"].numel(), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        # Under DDP, compute() sums the counts of every rank's rows (torchmetrics syncs), so each rank
        # holds the same scores and ModelCheckpoint picks the same epoch on all; sync_dist averages
        # those equal values (exactly) and tells Lightning they are every rank's.
        scores = self.val_metrics.compute()
        self.val_metrics.reset()
        if float(scores["val/acc"]) > self.val_at_best.get("val/acc", -1.0):
            self.val_at_best = {k: float(v) for k, v in scores.items()}
        self.val_acc_best.update(scores["val/acc"])
        self.log_dict(scores, prog_bar=True, sync_dist=True)
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._loss_and_logits(batch, evaluating=True)
        preds = logits.argmax(-1)
        self.test_metrics.update(preds, batch["labels"])
        self.test_details.update(preds, batch["labels"])
        if self.test_probs is not None:
            self.test_probs.append(logits.softmax(-1).cpu())
        self.log("test/loss", loss, on_epoch=True, batch_size=batch["labels"].numel(), sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute(), sync_dist=True)  # every rank's rows, as in validation
        self.test_results = {k: v.tolist() for k, v in self.test_details.compute().items()}
        self.test_metrics.reset()
        self.test_details.reset()

    def configure_optimizers(self) -> dict:
        # Four groups: head vs body (a freshly initialised head may take larger steps than
        # pretrained weights), and nanoGPT's rule for decay: matrices decay, biases and norm gains don't.
        lr, head_lr = self.hparams.learning_rate, self.hparams.head_learning_rate or self.hparams.learning_rate
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, p in self.classifier.named_parameters():
            if p.requires_grad:
                groups.setdefault((self.classifier.is_head_parameter(name), p.ndim >= 2), []).append(p)
        params = [p for ps in groups.values() for p in ps]
        optimizer = torch.optim.AdamW(
            [
                {
                    "params": ps,
                    "lr": head_lr if is_head else lr,
                    "weight_decay": self.hparams.weight_decay if decay else 0.0,
                }
                for (is_head, decay), ps in sorted(groups.items())
            ],
            # One fused kernel per step instead of a loop of small ops per tensor (CPU and CUDA,
            # floating-point parameters on one device); it matters for full fine-tuning, where
            # the update streams every weight and both Adam moments through memory each step.
            fused=_fusable(params),
        )
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_scheduler(
            self.hparams.scheduler,
            optimizer,
            num_warmup_steps=int(self.hparams.warmup_ratio * total),
            num_training_steps=total,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _fusable(params: list[torch.nn.Parameter]) -> bool:
    """Whether torch's fused AdamW takes these parameters (float dtypes, CPU or CUDA)."""
    return bool(params) and all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
