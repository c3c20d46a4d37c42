"""One job's objects, built from its config: what train.py fits and tests, eval.py re-tests, and the tests use.

    backbone (cfg.backbone) -> datamodule (cfg.data) -> classifier -> regime.apply (cfg.regime)
    -> module (cfg.module) -> callbacks (cfg.callbacks + the regime's) -> loggers -> trainer

Every group of the config maps onto one `_target_`, so this module is instantiate() calls in
order. A callback that contributes to metrics.json exposes a `results` dict (ResourceMonitor,
an Optuna sweep's pruning callback); a sweep adds its callback through the config, not an import.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lora_lab.data.datamodule import TextClassificationDataModule
from lora_lab.errors import ConfigError
from lora_lab.job.checkpointing import AtomicCheckpointIO
from lora_lab.job.dir import JobDir
from lora_lab.job.outputs import parameter_counts
from lora_lab.job.stacking import Stacker
from lora_lab.models.backbones import Backbone
from lora_lab.models.classifier import Classifier, load_classifier
from lora_lab.models.module import ClassifierModule
from lora_lab.regimes.base import Regime


@dataclass
class BuiltJob:
    """The built job: its objects, ready to fit and test. `params` counts parameters after the regime
    shaped the model."""

    cfg: DictConfig
    backbone: Backbone
    datamodule: TextClassificationDataModule
    classifier: Classifier
    tokenizer: PreTrainedTokenizerBase
    regime: Regime
    module: ClassifierModule
    callbacks: list[pl.Callback]
    loggers: list[Logger]
    trainer: pl.Trainer
    params: dict[str, float]
    # cfg.stack (conf/stack/): what the tested model is stacked with before it ships; None: alone.
    stacker: Stacker | None = None

    @property
    def selects_best_epoch(self) -> bool:
        """Whether a ModelCheckpoint keeps the best validation epoch for the test (else: the last epoch)."""
        return self.regime.trains_by_gradient and getattr(self.trainer.checkpoint_callback, "monitor", None) is not None

    @property
    def test_checkpoint(self) -> str | None:
        """The best epoch's checkpoint (the first ModelCheckpoint's: callbacks.model_checkpoint; the
        resume checkpoint beside it only resumes), or None to test the weights as they are."""
        return self.trainer.checkpoint_callback.best_model_path if self.selects_best_epoch else None

    def test_probabilities(self) -> torch.Tensor:
        """The test loop's softmax rows (collected when module.test_probs was a list before the test),
        each put back at its row's index: the loader sorts rows by length."""
        order = [i for batch in self.datamodule.test_dataloader().batch_sampler for i in batch]
        probs = torch.empty(len(order), len(self.datamodule.labels), dtype=torch.float64)
        probs[torch.tensor(order)] = torch.cat(self.module.test_probs).double()
        self.module.test_probs = None
        return probs

    def callback_results(self) -> dict[str, Any]:
        """What the callbacks measured (time, memory, the trial's pruning step), for metrics.json."""
        return {k: v for c in self.callbacks for k, v in getattr(c, "results", {}).items()}

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Loggers see the whole config first and are closed with the job's outcome, whatever it is."""
        hparams = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in self.cfg.items()
            if k != "hydra"
        }
        for logger in self.loggers:
            logger.log_hyperparams(hparams)
        status = "failed"
        try:
            yield
            status = "success"
        finally:
            for logger in self.loggers:
                logger.finalize(status)
            # End the W&B run, so the next job of an in-process multirun starts its own.
            if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
                sys.modules["wandb"].finish()

    def log_summary(self, metrics: dict[str, Any]) -> None:
        """What Lightning did not log (sizes, counts, times) goes to every logger too: W&B and MLflow
        runs then hold the whole comparison, not just the curves."""
        summary = {
            k: float(v)
            for k, v in metrics.items()
            # The selected epoch's val/ scores are points of the validation curves already.
            if isinstance(v, (int, float)) and k not in self.trainer.logged_metrics and k not in self.module.val_at_best
        }
        for logger in self.loggers:
            logger.log_metrics(summary, step=self.trainer.global_step)

    def drop_checkpoints(self) -> None:
        """Checkpoints only restore the best epoch before the test; adapter/ and merged/ are the artifacts."""
        if not self.cfg.get("keep_checkpoints", False) and self.trainer.checkpoint_callback is not None:
            shutil.rmtree(self.trainer.checkpoint_callback.dirpath, ignore_errors=True)


def build_job(cfg: DictConfig, trained: Path | None = None, load: str = "auto") -> BuiltJob:
    """Build a fresh job from cfg, or (trained=<job dir>) the model that job saved, for re-testing."""
    _print_lightning_once()
    pl.seed_everything(cfg.seed, workers=True)
    regime = instantiate(cfg.regime)
    backbone = instantiate(cfg.backbone)  # a description: weights and tokenizer load on first use
    if trained is None:
        tokenizer = regime.tokenizer(backbone)
        datamodule = instantiate(cfg.data, tokenizer=tokenizer)
        datamodule.setup("fit")
        classifier = regime.build_classifier(backbone, datamodule.id2label, seed=cfg.seed)
        regime.apply(classifier)
    else:
        classifier, tokenizer = load_trained(trained, cfg, regime, load, backbone)
        labels = [classifier.id2label[i] for i in range(len(classifier.id2label))]
        datamodule = instantiate(cfg.data, tokenizer=tokenizer, labels=labels)
    params = parameter_counts(classifier)
    module = instantiate(cfg.module)(classifier=classifier, hooks=regime)
    # `callbacks.model_checkpoint=null` removes one: Hydra keeps the key with a None value.
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
    if trained is None:
        callbacks += regime.callbacks()
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values() if c is not None]
    # Without a ModelCheckpoint of ours Lightning would add its own, which writes the weights every
    # epoch and selects nothing: none at all then, and the test runs on the last epoch.
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        enable_checkpointing=checkpointing,
        plugins=[AtomicCheckpointIO()],
    )  # a kill mid-save never leaves a truncated checkpoint
    stacker = instantiate(cfg.stack) if trained is None and cfg.get("stack", {}).get("_target_") else None
    if stacker is not None and not stacker.applies_to(regime):
        stacker = None  # regime=tfidf or zeroshot: shipped alone (Stacker.applies_to says why)
    return BuiltJob(
        cfg, backbone, datamodule, classifier, tokenizer, regime, module, callbacks, loggers, trainer, params, stacker
    )


def load_trained(
    run_dir: Path, cfg: DictConfig, regime: Regime, load: str = "auto", backbone: Backbone | None = None
) -> tuple[Classifier, PreTrainedTokenizerBase]:
    """A finished job's classifier and tokenizer: merged/ (a plain model), or the base backbone + adapter/
    (the regime's adapter_dir: tfidf/ for regime=tfidf, its whole model)."""
    load = resolve_load(run_dir, load)
    if load == "merged":
        return load_classifier(run_dir / "merged"), AutoTokenizer.from_pretrained(str(run_dir / "merged"))
    adapter = run_dir / regime.adapter_dir
    if not regime.has_adapter or not adapter.is_dir():
        raise ConfigError(f"{run_dir} has no {regime.adapter_dir}/ (regime {regime.name}); use load=merged")
    backbone = backbone or instantiate(cfg.backbone)
    classifier = regime.build_classifier(backbone, JobDir(run_dir).id2label(), seed=cfg.seed)
    regime.load_adapter(classifier, adapter)
    return classifier, regime.tokenizer(backbone)


def resolve_load(run_dir: Path, load: str) -> str:
    """merged or adapter: what `load` (auto | merged | adapter) reads from this job dir."""
    if load not in ("auto", "merged", "adapter"):
        raise ConfigError(f"load={load!r}: use auto, merged or adapter")
    if load == "auto":
        return "merged" if (run_dir / "merged").is_dir() else "adapter"
    return load


def _print_lightning_once() -> None:
    """lightning/__init__.py gives the `lightning` logger a console handler of its own. Where logging is
    configured already (Hydra's console and train.log handlers on the root), Lightning's messages
    propagate there too and every one would print twice: leave them to the root's handlers."""
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()
