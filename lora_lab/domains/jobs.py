"""The jobs of a per-domain comparison: ordinary train jobs, each in its own dir under the run dir.

    adapters/<domain>/    cfg.regime on that domain's rows (dataset.subset={domain_column: domain})
    adapters/all/         cfg.regime on every row
    baselines/<regime>/   each baseline regime on every row

A domain's rows come from dataset.subset, not from a per-domain dataset (dataset.domain=books):
that one would carve its own split, and on multi_domain_sentiment 227 of the 293 test rows of
domain=books sit in the all-domains training split, so the all-domains adapter would be scored
on rows it trained on. With subset, every job splits the whole dataset with the same seed and
a domain's test rows are the whole test split's rows of that domain, for every model.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from lora_lab.artifacts import write_text
from lora_lab.config import CONF_DIR
from lora_lab.errors import ConfigError
from lora_lab.job.dir import JobDir
from lora_lab.regimes.peft_regime import PeftRegime
from lora_lab.train import train

log = logging.getLogger(__name__)
ALL = "all"
# Keys of conf/domains.yaml that steer the comparison, not a job: a job's config drops them.
COMPARISON_KEYS = ("domains", "domain_column", "baselines", "switch_repeats", "logit_tolerance")


@dataclass(frozen=True)
class DomainJob:
    """One train job of the comparison."""

    role: str  # "own" (one domain's adapter), "all" (the all-domains adapter) or "baseline"
    name: str  # the domain, "all", or the baseline's regime name
    run_dir: Path
    cfg: DictConfig


def resolve_domains(cfg: DictConfig) -> list[str]:
    """cfg.domains as a list: `all` means every value of the domain column in the training rows."""
    if cfg.dataset.get("subset"):
        raise ConfigError(
            f"dataset.subset={cfg.dataset.subset}: lora_lab.domains sets the subset per job; leave it null"
        )
    splits = instantiate(cfg.dataset).load()
    column = cfg.domain_column
    if column not in splits["train"].extra:
        raise ConfigError(
            f"domain_column={column!r}: dataset {cfg.dataset.name} rows carry only {sorted(splits['train'].extra)} "
            "(a csv/jsonl/parquet file keeps a column with dataset.extra_columns=[...])"
        )
    found = {name: {str(v) for v in split.extra[column]} for name, split in splits.items()}
    wanted = sorted(found["train"]) if cfg.domains == ALL else names(cfg.domains, "domains")
    for domain in wanted:
        missing = [name for name, values in found.items() if domain not in values]
        if missing:
            raise ConfigError(
                f"domains: {domain!r} has no {'/'.join(missing)} rows; domains found: {sorted(found['train'])}"
            )
        if domain == ALL or "/" in domain or domain.startswith("."):
            raise ConfigError(f"domain {domain!r} cannot name a job dir (adapters/{domain}/); rename it in the data")
    if not wanted:
        raise ConfigError("domains=[]: name at least one domain, or domains=all")
    return wanted


def names(value: str | list, key: str) -> list[str]:
    """A list setting given as a list or as one bare name (domains=books); each name at most once."""
    out = [value] if isinstance(value, str) else [str(v) for v in value]
    if len(set(out)) != len(out):
        raise ConfigError(f"{key}={out}: name each one once")
    return out


def plan(cfg: DictConfig, out_dir: Path, domains: list[str]) -> list[DomainJob]:
    """Every job of the comparison, in training order: domains, all, baselines."""
    if not isinstance(instantiate(cfg.regime), PeftRegime):
        raise ConfigError(
            f"regime={cfg.regime.name}: per-domain adapters are switched with PEFT's set_adapter, so the "
            "regime must be a PEFT one (lora, dora, ia3, loha, lokr, vera, adalora); put head-only "
            "or other regimes in baselines=[...]"
        )
    jobs = [
        DomainJob("own", d, out_dir / "adapters" / d, job_config(cfg, out_dir / "adapters" / d, {cfg.domain_column: d}))
        for d in domains
    ]
    jobs.append(DomainJob("all", ALL, out_dir / "adapters" / ALL, job_config(cfg, out_dir / "adapters" / ALL)))
    for name in names(cfg.baselines, "baselines"):
        run_dir = out_dir / "baselines" / name
        jobs.append(DomainJob("baseline", name, run_dir, job_config(cfg, run_dir, regime=regime_config(name))))
    return jobs


def job_config(
    cfg: DictConfig, run_dir: Path, subset: dict | None = None, regime: DictConfig | None = None
) -> DictConfig:
    """cfg as one train job: its own output dir, optionally a row subset or another regime."""
    job = copy.deepcopy(cfg)
    with open_dict(job):
        for key in COMPARISON_KEYS:
            job.pop(key)
        job.paths.output_dir = str(run_dir)
        if subset is not None:
            job.dataset.subset = subset
        if regime is not None:
            job.regime = regime
    return job


def regime_config(name: str) -> DictConfig:
    """conf/regime/<name>.yaml, as `regime=<name>` composes it (regime files are flat, no defaults list);
    its interpolations (${rank}, ${backbone.target_modules}) resolve in the job's config."""
    path = CONF_DIR / "regime" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"baselines: no regime {name!r} ({path}); choose from {sorted(p.stem for p in path.parent.glob('*.yaml'))}"
        )
    regime = OmegaConf.load(path)
    if "defaults" in regime:
        raise ConfigError(
            f"{path} has a defaults list, which lora_lab.domains does not compose for baselines; inline it"
        )
    return regime


def run_jobs(jobs: list[DomainJob]) -> None:
    """Train every job in turn (a failed job stops the comparison: its status.json says why)."""
    for job in jobs:
        if JobDir(job.run_dir).status_path.exists():
            raise ConfigError(
                f"{job.run_dir} holds a job already; lora_lab never overwrites one: choose a new hydra.run.dir"
            )
        # What Hydra writes for a job, so `python -m lora_lab.eval run_dir=<job dir>` works on it.
        write_text(
            JobDir(job.run_dir).config_path, OmegaConf.to_yaml({k: v for k, v in job.cfg.items() if k != "hydra"})
        )
        log.info("Training %s %s in %s", job.role, job.name, job.run_dir)
        train(job.cfg)
