"""Score the finished jobs of a comparison on each domain's test rows.

The domain adapters and the all-domains adapter are loaded into ONE MultiAdapterClassifier and
reached by switching (use -> set_adapter + head). Each is also loaded standalone (base +
adapter, as `lora_lab.eval load=adapter` does) and run on the same batches: the largest logit
difference is the proof that switching serves each adapter exactly. Baselines load as their
jobs saved them (merged/ when written).
"""

from __future__ import annotations

import logging

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from lora_lab.domains.jobs import ALL, DomainJob
from lora_lab.domains.scoring import DomainRows, domain_test_rows, predict, scores, switch_ms
from lora_lab.errors import ConfigError
from lora_lab.job.build import load_trained
from lora_lab.job.dir import JobDir
from lora_lab.models.multi_adapter import MultiAdapterClassifier

log = logging.getLogger(__name__)
OVERALL = "all domains"


def evaluate(cfg: DictConfig, jobs: list[DomainJob], domains: list[str]) -> dict:
    """Scores per domain and overall for own / all / each baseline, with costs and the switch check."""
    backbone = instantiate(cfg.backbone)
    rows = domain_test_rows(cfg, backbone.tokenizer, cfg.domain_column, domains)
    check_same_rows(jobs, rows)
    batch = (cfg.data.eval_batch_size, backbone.tokenizer.pad_token_id)
    adapters = [job for job in jobs if job.role in ("own", ALL)]
    model = MultiAdapterClassifier.load(
        backbone, {job.name: job.run_dir / "adapter" for job in adapters}, shared_labels(adapters), cfg.seed
    )
    # logits[column][domain]: column "own", "all" or a baseline name; each with its seconds.
    logits: dict[str, dict[str, tuple[torch.Tensor, float]]] = {}
    logit_diff: dict[str, dict[str, float]] = {"own": {}, ALL: {}}
    for job in adapters:
        column = "own" if job.role == "own" else ALL
        standalone, _ = load_trained(job.run_dir, job.cfg, instantiate(job.cfg.regime), "adapter")
        for domain in [job.name] if job.role == "own" else domains:
            model.use(job.name)
            logits.setdefault(column, {})[domain] = predict(model, rows[domain], *batch)
            reference, _ = predict(standalone, rows[domain], *batch)
            logit_diff[column][domain] = float((logits[column][domain][0] - reference).abs().max())
    # Each column's label map: its predictions are read in it.
    columns = {"own": model.id2label, ALL: model.id2label}
    for job in (j for j in jobs if j.role == "baseline"):
        classifier, _ = load_trained(job.run_dir, job.cfg, instantiate(job.cfg.regime), "auto")
        logits[job.name] = {d: predict(classifier, rows[d], *batch) for d in domains}
        columns[job.name] = classifier.id2label
    return {
        "dataset": cfg.dataset.name,
        "backbone": cfg.backbone.name,
        "regime": cfg.regime.name,
        "domain_column": cfg.domain_column,
        "domains": domains,
        "baselines": [job.name for job in jobs if job.role == "baseline"],
        "columns": list(columns),
        "rows": {d: len(rows[d].labels) for d in domains},
        "scores": score_table(logits, columns, rows, domains),
        "max_abs_logit_diff": logit_diff,
        "logit_tolerance": cfg.logit_tolerance,
        "switch_ms": switch_ms(model, cfg.switch_repeats),
        "switch_repeats": cfg.switch_repeats,
        "jobs": {f"{job.role}/{job.name}": job_costs(job) for job in jobs},
    }


def shared_labels(jobs: list[DomainJob]) -> dict[int, str]:
    """The one label map of the adapter jobs (all planned from one config, so one base)."""
    first = jobs[0]
    labels = JobDir(first.run_dir).id2label()
    for job in jobs[1:]:
        other = JobDir(job.run_dir).id2label()
        if other != labels:
            raise ConfigError(
                f"adapters {first.name!r} and {job.name!r} have different label maps ({labels} vs {other}); "
                "one model switches adapters over one label map: give every domain rows of every label"
            )
    return labels


def check_same_rows(jobs: list[DomainJob], rows: dict[str, DomainRows]) -> None:
    """Each domain job was tested on as many rows as we score for its domain: the same rows
    (both are the all-domains test split filtered to the domain)."""
    for job in (j for j in jobs if j.role == "own"):
        tested = JobDir(job.run_dir).metrics()["data/test_rows"]
        if tested != len(rows[job.name].labels):
            raise ConfigError(
                f"job {job.run_dir} tested {tested} rows but domain {job.name!r} has {len(rows[job.name].labels)} "
                "test rows in the all-domains split: the jobs did not split the same data"
            )


def score_table(
    logits: dict[str, dict[str, tuple[torch.Tensor, float]]],
    columns: dict[str, dict[int, str]],
    rows: dict[str, DomainRows],
    domains: list[str],
) -> dict[str, dict[str, dict[str, float]]]:
    """scores[domain or "all domains"][column] = acc, f1_macro, ms_per_example (batched forward).

    The overall row pools every domain's rows; for "own" each row went through its domain's
    adapter (routing by domain), for the others through the one model.
    """
    table: dict[str, dict[str, dict[str, float]]] = {d: {} for d in [*domains, OVERALL]}
    for column, id2label in columns.items():
        for domain in domains:
            domain_logits, seconds = logits[column][domain]
            table[domain][column] = {
                **scores(domain_logits, id2label, rows[domain].labels),
                "ms_per_example": 1000 * seconds / len(rows[domain].labels),
            }
        pooled = torch.cat([logits[column][d][0] for d in domains])
        gold = [label for d in domains for label in rows[d].labels]
        seconds = sum(logits[column][d][1] for d in domains)
        table[OVERALL][column] = {**scores(pooled, id2label, gold), "ms_per_example": 1000 * seconds / len(gold)}
    return table


def job_costs(job: DomainJob) -> dict:
    """What a job cost and saved: adapter bytes, training seconds, its own test scores."""
    metrics = JobDir(job.run_dir).metrics()
    return {
        "run_dir": str(job.run_dir),
        "regime": job.cfg.regime.name,
        "adapter_bytes": metrics["artifact/adapter_bytes"],
        "train_s": metrics["time/train_s"],
        "saved_test_acc": metrics["test/acc"],
        "saved_test_f1_macro": metrics["test/f1_macro"],
        "test_rows": metrics["data/test_rows"],
    }
