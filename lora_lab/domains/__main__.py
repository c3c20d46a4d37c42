"""python -m lora_lab.domains [domains=[books,dvd]] [regime=dora] [baselines=[zeroshot,head]] [train overrides]

Trains the jobs (jobs.py), scores them per domain through one multi-adapter model
(evaluation.py) and writes <run dir>/domains_report.{md,json} (report.py).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from lora_lab.cli.errors import checks_group_choices, report_user_errors
from lora_lab.config import CONF_DIR
from lora_lab.config.validation import validate
from lora_lab.errors import ConfigError


class SwitchingError(RuntimeError):
    """The multi-adapter model did not reproduce a standalone adapter's logits."""


def run(cfg: DictConfig) -> dict:
    """The whole comparison in cfg.paths.output_dir; returns the report's data."""
    validate(cfg)
    # Here, not at the top: the jobs and their scoring load torch, lightning and peft (seconds),
    # which --help and a config error do not need.
    from lora_lab.domains.evaluation import evaluate
    from lora_lab.domains.jobs import plan, resolve_domains, run_jobs
    from lora_lab.domains.report import REPORT_NAME, write_report

    if cfg.switch_repeats < 1 or cfg.logit_tolerance <= 0:
        raise ConfigError(
            f"switch_repeats={cfg.switch_repeats}, logit_tolerance={cfg.logit_tolerance}: both must be > 0"
        )
    out_dir = Path(cfg.paths.output_dir)
    domains = resolve_domains(cfg)
    jobs = plan(cfg, out_dir, domains)
    run_jobs(jobs)
    results = evaluate(cfg, jobs, domains)
    print(write_report(out_dir, results))
    # Checked after writing: the report shows which adapter drifted, and by how much.
    drift = {
        f"{column}/{domain}": diff
        for column, by_domain in results["max_abs_logit_diff"].items()
        for domain, diff in by_domain.items()
        if diff > cfg.logit_tolerance
    }
    if drift:
        raise SwitchingError(
            f"set_adapter did not reproduce the standalone adapters' logits (max abs difference {drift} > "
            f"logit_tolerance={cfg.logit_tolerance}); see {out_dir / REPORT_NAME}.md"
        )
    return results


@checks_group_choices(CONF_DIR)
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="domains")
@report_user_errors
def main(cfg: DictConfig) -> float:
    from lora_lab.domains.evaluation import OVERALL

    return run(cfg)["scores"][OVERALL]["own"]["acc"]


if __name__ == "__main__":
    main()
