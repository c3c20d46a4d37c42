"""The per-epoch half of regime=dendrites: PerforatedAI reads each validation score and may restructure.

PerforatedAI's training-loop contract (its README): after each validation,
`model, restructured, training_complete = tracker.add_validation_score(score, model)`; when
`restructured`, the model has new parameters (it reloaded its best model and added a dendrite
set, or went back to its best model), so the optimizer and scheduler must be rebuilt; when
`training_complete`, stop. DendriteSwitching is that contract as a Lightning callback.

One invariant keeps `trainer.test(ckpt_path="best")` right. A restructure changes which tensors
the model has, so ModelCheckpoint's best file (an earlier epoch, in the old structure) would no
longer load. After a restructure the model is PerforatedAI's best model plus zero-weighted fresh
dendrites: the best epoch's function in the new structure. Both sides pick the same best epoch
(the first with the strictly highest val score; perforated.configure sets PerforatedAI so), which
is checked, and the best file is rewritten with the restructured model.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lora_lab.errors import ConfigError
from lora_lab.regimes.perforated import PerforatedAIError, dendrite_sets, pai_call, settle, tracker

log = logging.getLogger(__name__)


class DendriteSwitching(pl.Callback):
    """Feeds `monitor` to PerforatedAI after every validation of a fit and follows its answer."""

    def __init__(self, work_dir: Path, pai_tracker: Any, monitor: str = "val/acc"):
        self.work_dir, self.pai_tracker, self.monitor = work_dir, pai_tracker, monitor
        self.restructures = 0
        self.history: list[dict[str, float | int | bool]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and (ckpt.monitor != self.monitor or ckpt.mode != "max"):
            raise ConfigError(
                f"regime=dendrites restructures around the best {self.monitor} (higher is better), but the "
                f"checkpoint callback keeps the best {ckpt.monitor} ({ckpt.mode}): set regime.monitor={ckpt.monitor} "
                f"if it is a score to maximise, or callbacks.model_checkpoint.monitor={self.monitor} mode=max"
            )
        self._check_tracker()
        # PerforatedAI reads the learning rate from the optimizer at every validation score.
        self.pai_tracker.set_optimizer_instance(trainer.optimizers[0])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs before ModelCheckpoint's on_validation_end (Lightning orders checkpoint callbacks last).
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if self.monitor not in trainer.callback_metrics:
            raise ConfigError(
                f"regime.monitor={self.monitor}: not logged by validation ({sorted(trainer.callback_metrics)})"
            )
        score = float(trainer.callback_metrics[self.monitor])
        self._check_tracker()
        classifier = pl_module.classifier
        with pai_call(self.work_dir):
            net, restructured, complete = self.pai_tracker.add_validation_score(score, classifier)
        if net is not classifier:
            raise PerforatedAIError(
                "PerforatedAI returned a different model object; it is expected to restructure in place"
            )
        settle(classifier)
        if restructured:
            self.restructures += 1
            rebuild_optimizers(trainer)
            self.pai_tracker.set_optimizer_instance(trainer.optimizers[0])
            self._rewrite_best_checkpoint(trainer, score)
            log.info(
                "PerforatedAI restructured the model (dendrite sets per module: max %d); optimizer rebuilt",
                max(dendrite_sets(classifier).values()),
            )
        if complete:
            log.info("PerforatedAI: further dendrite sets stopped improving %s; stopping the fit", self.monitor)
            trainer.should_stop = True
        self._record(trainer, pl_module, score, bool(restructured))

    def _check_tracker(self) -> None:
        if tracker() is not self.pai_tracker:
            raise PerforatedAIError(
                "PerforatedAI keeps one global tracker, and another model was perforated in this process "
                "since this one: run one dendrite job at a time per process"
            )

    def _rewrite_best_checkpoint(self, trainer: pl.Trainer, score: float) -> None:
        ckpt = trainer.checkpoint_callback
        if ckpt is None or not ckpt.best_model_path:
            return  # no best file yet: ModelCheckpoint saves this (restructured) epoch itself
        # ModelCheckpoint takes this epoch only if strictly better, right after this callback.
        lightning_best = max(float(ckpt.best_model_score), score)
        pai_best = float(self.pai_tracker.member_vars["global_best_validation_score"])
        if not math.isclose(pai_best, lightning_best, rel_tol=0.0, abs_tol=1e-9):
            raise PerforatedAIError(
                f"PerforatedAI restructured around a best {self.monitor} of {pai_best}, ModelCheckpoint's best is "
                f"{lightning_best}: the tested model would not be the one the dendrites grew on"
            )
        trainer.save_checkpoint(ckpt.best_model_path, weights_only=ckpt.save_weights_only)

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule, score: float, restructured: bool) -> None:
        sets = max(dendrite_sets(pl_module.classifier).values())
        trainable = sum(p.numel() for p in pl_module.classifier.parameters() if p.requires_grad)
        optimized = sum(p.numel() for group in trainer.optimizers[0].param_groups for p in group["params"])
        self.history.append(
            {
                "score": score,
                "restructured": restructured,
                "dendrite_sets": sets,
                "trainable": trainable,
                "optimized": optimized,
            }
        )
        for logger in trainer.loggers:
            logger.log_metrics(
                {"dendrites/sets": sets, "dendrites/trainable_params": trainable}, step=trainer.global_step
            )


def rebuild_optimizers(trainer: pl.Trainer) -> None:
    """Optimizers over the model's current parameters; the LR schedule resumes where it was.

    configure_optimizers() runs again (fresh optimizer state: the parameter set changed), and each
    new scheduler is stepped to the current step or epoch, so a restructure does not restart the
    warm-up or the decay.
    """
    trainer.strategy.setup_optimizers(trainer)
    with warnings.catch_warnings():
        # Replaying the schedule steps the scheduler before its new optimizer has stepped: intended here.
        warnings.filterwarnings(
            "ignore", message=r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"
        )
        for config in trainer.lr_scheduler_configs:
            if config.reduce_on_plateau:
                continue  # driven by a metric, not by a position in the fit: nothing to replay
            done = trainer.global_step if config.interval == "step" else trainer.current_epoch
            for _ in range(done // config.frequency):
                config.scheduler.step()
