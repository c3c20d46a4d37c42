"""The report's story: collect the jobs, open the study, compose, write report.md + report.html, swap them in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lora_lab.report import REPORT_DIR
from lora_lab.report.collect import collect_jobs
from lora_lab.report.contents import compose
from lora_lab.report.front import DEFAULT_CONSTRAINTS
from lora_lab.report.html import write_html
from lora_lab.report.markdown import write_markdown
from lora_lab.report.publish import staged_report_dir
from lora_lab.report.study import attach_trials, load_study
from lora_lab.report.wandb_log import log_to_wandb


def build_report(
    sweep_dir: Path,
    out: Path | None = None,
    wandb_mode: str | None = None,
    constraints: Sequence[str] = DEFAULT_CONSTRAINTS,
) -> Path:
    """Write the report of the sweep in sweep_dir into `out` (default <sweep_dir>/report) and return `out`.

    wandb_mode (offline | online) also logs its tables and figures to W&B (see wandb_log.py).
    constraints: the recommendation lines of the front (report/front.py).
    """
    study = load_study(sweep_dir)
    # Workers sharing one study each keep their jobs in their own sweep dir: report them all.
    jobs = collect_jobs(sweep_dir, also=study.job_dirs() if study is not None else [])
    if study is not None:
        attach_trials(jobs, study)
    out = out if out is not None else sweep_dir / REPORT_DIR
    with staged_report_dir(out) as tmp:
        doc = compose(sweep_dir, jobs, study, tmp, constraints)
        write_markdown(doc, tmp / "report.md")
        write_html(doc, tmp, tmp / "report.html")
    if wandb_mode is not None:
        log_to_wandb(doc, out, sweep_dir, wandb_mode)
    return out
