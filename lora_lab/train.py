"""Train, test and save one job: python -m lora_lab.train [overrides]; add -m for a multirun.

Only Hydra and lora_lab's light modules load at start-up, so `--help` and a config error answer
at once; the job's libraries (torch, lightning, transformers, peft) load when a job runs.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lora_lab.cli.errors import checks_group_choices, report_user_errors
from lora_lab.cli.run import is_ddp_worker, is_multirun, sweep_dir, task_overrides
from lora_lab.config import CONF_DIR
from lora_lab.config.hardware import launches_processes
from lora_lab.config.validation import validate
from lora_lab.errors import ConfigError, UserError
from lora_lab.job.provenance import write_provenance
from lora_lab.job.record import JobRecord

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Run one job in its Hydra output dir; return cfg.optimized_metric for sweepers."""
    run_dir = Path(cfg.paths.output_dir)
    if is_ddp_worker(cfg):
        # Rank 1.. of a DDP job (trainer=ddp_cpu): Lightning started this process by re-running the
        # command with rank 0's hydra.run.dir (and hydra.output_subdir=null). Rank 0 checked the config
        # and owns status.json and every file of the job; this process trains and tests its share.
        fit_and_test(cfg, run_dir)
        return None
    record = JobRecord(run_dir, cfg, sweep_dir=sweep_dir())
    try:
        validate(cfg)
        check_relaunch(cfg)
    except UserError as err:
        if record.sweep_dir is not None:  # a sweep goes on: its report shows why this job never ran
            record.fail(err)
        raise
    if (original := record.find_original()) is not None:
        return record.answer_from(original, cfg.optimized_metric)
    record.start()
    paths = OmegaConf.to_container(cfg.paths, resolve=True)
    write_provenance(run_dir, instantiate(cfg.dataset).files(), cfg.get("seed"), task_overrides(), paths)
    try:
        metrics = fit_and_test(cfg, run_dir)
    except BaseException as err:
        record.fail(err)
        raise
    record.finish(metrics)
    return metrics.get(cfg.optimized_metric)


def fit_and_test(cfg: DictConfig, run_dir: Path) -> dict:
    """The story of a job: build it, fit (or fit without gradients), test the selected epoch, save."""
    # Imported here, not at the top: they load torch, lightning and transformers (about 8 s), which
    # `--help`, a config error and a duplicate job never need.
    from lora_lab.job.allocator import fix_mmap_threshold
    from lora_lab.job.build import build_job
    from lora_lab.job.checkpointing import resume_checkpoint
    from lora_lab.job.outputs import (
        format_table,
        job_metrics,
        write_job_outputs,
        write_test_predictions,
        write_test_sample,
    )

    fix_mmap_threshold(cfg.get("malloc_mmap_threshold"))  # before the model's tensors (job/allocator.py)
    job = build_job(cfg)
    with job.tracking(), out_of_memory_as_user_error(cfg):
        start = time.perf_counter()
        job.regime.prepare(job.classifier, job.datamodule)  # closed-form heads, a contrastive phase
        prepare_s = time.perf_counter() - start
        if job.regime.trains_by_gradient:
            job.trainer.fit(
                job.module, datamodule=job.datamodule, ckpt_path=resume_checkpoint(run_dir, cfg.get("resume", False))
            )
        else:
            job.trainer.validate(job.module, datamodule=job.datamodule, verbose=False)
        val_acc_best = float(job.trainer.callback_metrics["val/acc_best"])
        if job.regime.trains_by_gradient and not job.selects_best_epoch:
            log.warning("No ModelCheckpoint monitoring a metric: testing the last epoch, not the best one.")
        # Model selection on validation: test the best epoch, not the last one.
        # verbose=False: Lightning prints its table through rich, which ends the process on a closed
        # stdout (a killed `| tee`, a parent gone) before the job's files are written; ours follows them.
        # Each test row's answer, for the report's paired tests: one process sees every row (DDP: a share).
        job.module.test_probs = [] if job.trainer.world_size == 1 else None
        job.trainer.test(job.module, datamodule=job.datamodule, ckpt_path=job.test_checkpoint, verbose=False)
        if not job.trainer.is_global_zero:
            return {}  # a DDP rank > 0: rank 0 writes the job's files (the test metrics are all ranks')
        metrics = job_metrics(job, prepare_s, val_acc_best)
        stack = None
        if job.stacker is not None:  # the tested model + TF-IDF, mixed on validation (job/stacking.py)
            stack, metrics = job.stacker.fit(job, metrics)
        if job.module.test_probs is not None:
            write_test_predictions(job, stack)
        write_test_sample(job, cfg.seed)
        metrics = write_job_outputs(
            run_dir,
            job.classifier,
            job.regime,
            job.tokenizer,
            metrics,
            job.datamodule.truncation,
            stack,
            latency_texts=job.datamodule.splits["test"].texts,
            seed=cfg.seed,
            train_counts=job.datamodule.splits["train"].label_counts(),
        )
        job.log_summary(metrics)
    job.drop_checkpoints()
    stacked = f" + {metrics['stack/with']}" if "stack/with" in metrics else ""
    print_closing(
        format_table(metrics, f"{cfg.dataset.name} / {cfg.backbone.name} / {cfg.regime.name}{stacked} -> {run_dir}")
    )
    return metrics


def print_closing(text: str) -> None:
    """The job's result table. A closed stdout must not fail a job whose files are written: stdout
    then points at /dev/null, so Python's flush at exit does not raise again (its docs' SIGPIPE recipe)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def check_relaunch(cfg: DictConfig) -> None:
    """A DDP trainer's other ranks are this process's command line run again (Lightning's
    _hydra_subprocess_cmd adds rank 0's hydra.run.dir): that is this job only in a single run of
    `python -m lora_lab.train`. A multirun would start the whole sweep again in each rank; another
    entry point (lora_lab.domains, a test runner) would re-run itself."""
    if not launches_processes(cfg.trainer):
        return
    main = sys.modules["__main__"]
    if is_multirun() or Path(getattr(main, "__file__", "")).resolve() != Path(__file__).resolve():
        started = "a multirun (-m)" if is_multirun() else f"`{' '.join(sys.orig_argv)}`"
        raise ConfigError(
            f"trainer.strategy=ddp on trainer.devices={cfg.trainer.get('devices')} starts its other processes by "
            f"re-running the command, here {started}; run a DDP job alone: python -m lora_lab.train "
            "trainer=ddp_cpu ... (no -m), or use trainer=cpu in a sweep"
        )


@contextmanager
def out_of_memory_as_user_error(cfg: DictConfig) -> Iterator[None]:
    """A batch that does not fit in memory (CPU allocator, CUDA): a ConfigError naming the settings that
    shrink it, not torch's traceback. Activations grow with batch_size x max_length (x max_length
    again in attention), so halving either roughly halves the peak."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        text = str(err)
        if not isinstance(err, MemoryError) and "out of memory" not in text and "can't allocate memory" not in text:
            raise
        batch, length = cfg.data.batch_size, cfg.data.max_length
        raise ConfigError(
            f"out of memory ({text.splitlines()[0][:160] if text else type(err).__name__}): a batch of "
            f"data.batch_size={batch} texts of up to data.max_length={length} tokens does not fit. Lower "
            f"data.batch_size (e.g. data.batch_size={max(1, batch // 2)} trainer.accumulate_grad_batches=2 keeps "
            f"the effective batch) or data.max_length"
        ) from err


@checks_group_choices(CONF_DIR)
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
