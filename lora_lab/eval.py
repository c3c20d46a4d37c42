"""Re-evaluate a finished job: python -m lora_lab.eval run_dir=<job dir> [split=validation | data_file=new.csv].

Loads merged/ (a plain model, no PEFT) when the job wrote it, else the base backbone + adapter/,
and tests it on its dataset's test split, another split (split=validation|train), or every row of
a labelled CSV/JSONL file (data_file=: a shipped model on new data). Reports accuracy and macro-F1
(beside the saved ones on the job's own test split), ROC/PR AUC, the calibration error with a
reliability diagram and the most confused label pairs. Writes into its own output dir, never into the job's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, open_dict

from lora_lab.artifacts import write_json
from lora_lab.cli.errors import checks_group_choices, report_user_errors
from lora_lab.config import CONF_DIR
from lora_lab.data.files import FILE_FORMATS, LabelledFile
from lora_lab.data.splits import Split
from lora_lab.errors import ConfigError
from lora_lab.job.dir import JobDir

log = logging.getLogger(__name__)
# split -> the prefix of its metric keys (val/acc, as training names it); a data file's rows: file/acc.
SPLITS = {"test": "test", "validation": "val", "train": "train"}


def evaluate(
    run_dir: Path,
    output_dir: Path,
    load: str = "auto",
    *,
    split: str = "test",
    data_file: Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
    ece_bins: int = 15,
    confused_pairs: int = 10,
) -> dict:
    """Test the job saved in run_dir again on `split` or on data_file; every output goes to output_dir."""
    check_options(split, data_file, ece_bins, confused_pairs)
    data_file = Path(data_file) if data_file is not None else None
    from lora_lab.job.build import build_job, resolve_load  # torch, lightning, transformers: loaded to run only

    job_dir = JobDir(run_dir)
    if not job_dir.is_finished:
        raise ConfigError(
            f"run_dir={run_dir}: no {job_dir.metrics_path.name}, so not a finished lora_lab job (or not a job dir)"
        )
    saved = job_dir.metrics()
    job_cfg = job_dir.config()
    with open_dict(job_cfg):
        # The job's trainer, data and module settings; only the compute monitor, no logger, our own dir.
        job_cfg.paths.output_dir = str(output_dir)
        job_cfg.callbacks = {"resource_monitor": {"_target_": "lora_lab.callbacks.resource_monitor.ResourceMonitor"}}
        # One process, whatever trained the job: a DDP trainer (trainer=ddp_cpu) would re-run this command.
        job_cfg.trainer.strategy, job_cfg.trainer.devices = "auto", 1
        job_cfg.logger = {}
        # The length the job resolved (data.max_length=auto): a file of new rows is cut as training cut.
        if isinstance(resolved := saved.get("data/max_length"), int):
            job_cfg.data.max_length = resolved
        if data_file is not None and job_cfg.module.get("class_weights") == "inverse_frequency":
            job_cfg.module.class_weights = (
                None  # fitted on the job's training rows, not loaded here: file/loss is unweighted
            )
    job = build_job(job_cfg, trained=run_dir, load=load)
    rows = serve_as_test(job, split, data_file, text_column, label_column)
    job.module.test_probs = []
    job.trainer.test(job.module, datamodule=job.datamodule, verbose=False)

    prefix = key_prefix(split, data_file)
    evaluated = str(data_file) if data_file is not None else f"{split} split"
    scores = {
        f"{prefix}/{k.removeprefix('test/')}": float(v)
        for k, v in job.trainer.callback_metrics.items()
        if k.startswith("test/")
    }
    probs = job.test_probabilities().numpy()
    if job_dir.is_stacked:  # a stacked job ships the mix (models/stack.py): score that
        probs, scores = stacked_scores(job_dir, probs, rows, job.datamodule.tokenized["test"].labels, prefix, scores)
    results = {
        **scores,
        **job.callback_results(),
        "loaded_from": resolve_load(run_dir, load),
        "run_dir": str(run_dir),
        "evaluated": evaluated,
        "data/rows": len(rows),
        # What loading found in these rows (a split's problem lines start "<split>:" or "<dataset>/<split>:").
        "data/problems": [p for p in job.datamodule.problems if data_file or p.split(":")[0].split("/")[-1] == split],
    }
    if data_file is None and split == "test":  # the job's own test rows: compare with what it saved
        results |= {"saved/test/acc": saved["test/acc"], "saved/test/f1_macro": saved["test/f1_macro"]}
    from lora_lab.job.plots import reliability_png
    from lora_lab.models.evaluation import score_probabilities

    labels = job.datamodule.tokenized["test"].labels
    prob_scores, pairs = score_probabilities(probs, labels, rows.texts, job.datamodule.labels, ece_bins, confused_pairs)
    results |= {f"{prefix}/{k}": v for k, v in prob_scores.items()}
    output_dir.mkdir(parents=True, exist_ok=True)
    reliability_png(
        prob_scores["reliability"],
        prob_scores["ece"],
        output_dir / "reliability.png",
        title=data_file.name if data_file else evaluated,
    )
    write_json(output_dir / "confused_pairs.json", pairs)
    write_json(output_dir / "eval_metrics.json", results)
    print(summary(results, pairs, prefix))
    return results


def check_options(split: str, data_file: Path | None, ece_bins: Any, confused_pairs: Any) -> None:
    """The eval's own keys, checked before anything heavy loads: a bad value is a ConfigError naming it."""
    if split not in SPLITS:
        raise ConfigError(
            f"split={split!r}: use test, validation or train (or data_file=<labelled csv/jsonl> for rows of your own)"
        )
    if data_file is not None:
        if split != "test":
            raise ConfigError(
                f"split={split} with data_file={data_file}: the file's rows are what is evaluated; give one of the two"
            )
        if not Path(data_file).is_file():
            raise ConfigError(
                f"data_file={data_file}: no such file (resolved to {Path(data_file).resolve()}); "
                "give an absolute path or one relative to the directory you run from"
            )
        if Path(data_file).suffix.lower() not in FILE_FORMATS:
            raise ConfigError(
                f"data_file={data_file}: name a {', '.join(FILE_FORMATS)} file (the format is read from the suffix)"
            )
    if not isinstance(ece_bins, int) or isinstance(ece_bins, bool) or ece_bins < 1:
        raise ConfigError(f"ece_bins={ece_bins!r}: use a whole number of confidence bins, at least 1 (15 is the usual)")
    if not isinstance(confused_pairs, int) or isinstance(confused_pairs, bool) or confused_pairs < 0:
        raise ConfigError(
            f"confused_pairs={confused_pairs!r}: use a whole number, 0 or more (how many label pairs to list)"
        )


def key_prefix(split: str, data_file: Path | None) -> str:
    return "file" if data_file is not None else SPLITS[split]


def serve_as_test(job: Any, split: str, data_file: Path | None, text_column: str, label_column: str) -> Split:
    """Make the evaluated rows the datamodule's test split, which trainer.test reads; return them."""
    dm = job.datamodule
    if data_file is not None:
        from lora_lab.data.datamodule import TextClassificationDataModule

        source = LabelledFile(data_file, dm.labels, text_column, label_column)
        dm = job.datamodule = TextClassificationDataModule(
            source,
            job.tokenizer,
            eval_batch_size=dm.eval_batch_size,
            max_length=dm.max_length,
            labels=dm.labels,
            **dm.cut_settings,
        )
    dm.setup("test")
    if data_file is None and split != "test":
        dm.splits["test"], dm.tokenized["test"] = dm.splits[split], dm.tokenized[split]
    return dm.splits["test"]


def stacked_scores(
    job_dir: JobDir, probs: Any, rows: Split, labels: list[int], prefix: str, scores: dict
) -> tuple[Any, dict]:
    """The stack's probabilities of the rows and its scores; the trained model's own go under parts/."""
    import torch

    from lora_lab.job.stacking import SCORE_KEYS
    from lora_lab.models.metrics import scores_of_probabilities
    from lora_lab.models.stack import load_stack

    stack = load_stack(job_dir.stack_dir)
    mixed = stack.mix(torch.from_numpy(probs), rows.texts)
    model = stack.info["parts"]["model"]
    stacked = scores_of_probabilities(mixed, torch.tensor(labels), prefix)
    out = {f"parts/{model}/{k}": v for k, v in scores.items()}
    out |= {k: v for k, v in scores.items() if k.removeprefix(f"{prefix}/") not in SCORE_KEYS}
    out |= {f"{prefix}/{k}": stacked[f"{prefix}/{k}"] for k in SCORE_KEYS} | {"stack/weight": stack.weight}
    return mixed.double().numpy(), out


def summary(results: dict, pairs: list[dict], prefix: str) -> str:
    """What a person reads: the scores in two lines, the data problems, a table of the worst label pairs."""
    from lora_lab.models.evaluation import pairs_table

    def score(name: str) -> str:
        value, saved = results.get(f"{prefix}/{name}"), results.get(f"saved/{prefix}/{name}")
        return f"{prefix}/{name} {'n/a' if value is None else f'{value:.4f}'}" + (
            f" (saved {saved:.4f})" if saved is not None else ""
        )

    positive, left_out = results.get(f"{prefix}/auc_positive_class"), results.get(f"{prefix}/auc_left_out")
    aucs = ("roc_auc", "pr_auc") if positive else ("roc_auc_macro", "pr_auc_macro")
    return "\n".join(
        [
            f"{results['run_dir']} ({results['loaded_from']}) on {results['evaluated']}, {results['data/rows']} rows: "
            f"{score('acc')}, {score('f1_macro')}",
            f"{score(aucs[0])}, {score(aucs[1])}, {score('ece')} ({results[f'{prefix}/ece_bins']} bins)"
            + (f"; positive class {positive!r}" if positive else "")
            + (f"; AUCs without {left_out}: no rows of them" if left_out else ""),
            *(f"data: {problem}" for problem in results["data/problems"]),
            "most confused label pairs (examples in confused_pairs.json):\n" + pairs_table(pairs)
            if pairs
            else "no confused pairs: every row predicted right",
        ]
    )


@checks_group_choices(CONF_DIR)
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
@report_user_errors
def main(cfg: DictConfig) -> float:
    data_file = Path(cfg.data_file) if cfg.data_file else None
    results = evaluate(
        Path(cfg.run_dir),
        Path(cfg.paths.output_dir),
        cfg.load,
        split=cfg.split,
        data_file=data_file,
        text_column=cfg.text_column,
        label_column=cfg.label_column,
        ece_bins=cfg.ece_bins,
        confused_pairs=cfg.confused_pairs,
    )
    return results[f"{key_prefix(cfg.split, data_file)}/acc"]


if __name__ == "__main__":
    main()
