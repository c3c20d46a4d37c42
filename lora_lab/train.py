"""Train, test and save one job: python -m lora_lab.train [overrides]; add -m for a multirun."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import hydra
import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lora_lab.artifacts import read_json
from lora_lab.callbacks import ResourceMonitor
from lora_lab.config import CONF_DIR, validate
from lora_lab.job import JobRecord
from lora_lab.outputs import format_table, parameter_counts, write_job_outputs
from lora_lab.sweeper.pruning import OptunaPruning, trial_callbacks

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Run one job in its Hydra output dir; return cfg.optimized_metric for sweepers."""
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    job = JobRecord(run_dir, cfg, sweep_dir=_sweep_dir())
    if (original := job.find_original()) is not None:
        job.mark_duplicate(original)
        log.info("Effective config repeats job %s: recorded as its duplicate, not trained again.", original)
        metrics_path = original / "metrics.json"
        return read_json(metrics_path).get(cfg.optimized_metric) if metrics_path.exists() else None
    job.start()
    try:
        metrics = fit_and_test(cfg, run_dir)
    except BaseException as err:
        job.fail(err)
        raise
    if (pruned_at := metrics.get("trial/pruned_at")) is not None:
        job.prune(pruned_at)
    else:
        job.complete()
    print(format_table(metrics, f"{cfg.dataset.name} / {cfg.backbone.name} / {cfg.regime.name} -> {run_dir}"))
    return metrics.get(cfg.optimized_metric)


def fit_and_test(cfg: DictConfig, run_dir: Path) -> dict:
    """The story of a job: data, model, strategy, trainer; fit; test the best epoch; save."""
    pl.seed_everything(cfg.seed, workers=True)
    backbone = instantiate(cfg.backbone)
    datamodule = instantiate(cfg.data, tokenizer=backbone.tokenizer)
    datamodule.setup("fit")
    classifier = backbone.build_classifier(datamodule.id2label, seed=cfg.seed)
    strategy = instantiate(cfg.regime)
    strategy.apply(classifier)
    params = parameter_counts(classifier)
    module = instantiate(cfg.module)(classifier=classifier, strategy=strategy)

    # `callbacks.model_checkpoint=null` removes one: Hydra keeps the key with a None value.
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None] + strategy.callbacks()
    callbacks += trial_callbacks(cfg)  # an Optuna sweep's job: report to its trial, stop when pruned
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values() if c is not None]
    # Without a ModelCheckpoint of ours Lightning would add its own, which writes the weights every
    # epoch and selects nothing: none at all then, and the test runs on the last epoch.
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_checkpointing=checkpointing)
    hparams = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
               for k, v in cfg.items() if k != "hydra"}
    for logger in loggers:
        logger.log_hyperparams(hparams)
    status = "failed"
    try:
        prepare_s = _timed(strategy.prepare, classifier, datamodule)
        if strategy.trains_by_gradient:
            trainer.fit(module, datamodule=datamodule)
            # Model selection on validation: test the best epoch, not the last one.
            selection = "best_val_epoch" if getattr(trainer.checkpoint_callback, "monitor", None) else "last_epoch"
            if selection == "last_epoch":
                log.warning("No ModelCheckpoint monitoring a metric: testing the last epoch, not the best one.")
        else:
            trainer.validate(module, datamodule=datamodule, verbose=False)
            selection = "no_gradient_epochs"
        val_acc_best = float(trainer.callback_metrics["val/acc_best"])
        trainer.test(module, datamodule=datamodule, ckpt_path="best" if selection == "best_val_epoch" else None)
        monitor = next((c for c in callbacks if isinstance(c, ResourceMonitor)), None)
        compute = dict(monitor.results) if monitor else {}
        pruning = next((c for c in callbacks if isinstance(c, OptunaPruning)), None)  # in an Optuna sweep
        # Time spent fitting outside the gradient epochs (prototypes, a contrastive phase) is training time.
        compute["time/prepare_s"] = prepare_s
        compute["time/train_s"] = compute.get("time/train_s", 0.0) + prepare_s
        if not strategy.trains_by_gradient:
            compute["throughput/train_examples_per_s"] = len(datamodule.tokenized["train"]) / max(prepare_s, 1e-9)
        metrics = {
            **{k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")},
            "val/acc_best": val_acc_best,
            "model_selection": selection,
            "epochs": trainer.current_epoch,
            **(pruning.results if pruning else {}),
            **params,
            **compute,
            "test/f1_per_class": dict(zip(datamodule.labels, module.test_results["f1_per_class"])),
            "test/confusion_matrix": module.test_results["confusion_matrix"],
            **{f"data/{name}_rows": len(split) for name, split in datamodule.splits.items()},
            "data/problems": datamodule.problems,
        }
        metrics = write_job_outputs(run_dir, classifier, strategy, backbone.tokenizer, metrics)
        # What Lightning did not log (sizes, counts, times) goes to every logger too: W&B and MLflow
        # runs then hold the whole comparison, not just the curves.
        summary = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k not in trainer.logged_metrics}
        for logger in loggers:
            logger.log_metrics(summary, step=trainer.global_step)
        status = "success"
    finally:
        for logger in loggers:
            logger.finalize(status)
        _finish_wandb()
    if not cfg.keep_checkpoints and trainer.checkpoint_callback is not None:
        shutil.rmtree(trainer.checkpoint_callback.dirpath, ignore_errors=True)
    return metrics


def _timed(fn, *args: object) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _sweep_dir() -> Path | None:
    """The multirun's dir, where sibling jobs live (None for a single run)."""
    if not HydraConfig.initialized() or str(HydraConfig.get().mode) != "RunMode.MULTIRUN":
        return None
    return Path(HydraConfig.get().sweep.dir)


def _finish_wandb() -> None:
    """End the W&B run so the next job of an in-process multirun starts its own."""
    import sys

    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
