"""--wandb: the report's tables and figures as one W&B run in the sweep's group.

The jobs of a multirun log into the W&B group named after the sweep dir (conf/logger/wandb.yaml:
group=${run_group:}); this run joins that group with job_type=report, so the online report is
this run's panels (its tables and images), next to the jobs' own runs. Offline (the default,
as for the jobs) it is written under <sweep dir>/wandb/ and uploaded by `wandb sync`.
"""

from __future__ import annotations

from pathlib import Path

from lora_lab.report.document import Document, Figure, Table
from lora_lab.report.errors import ReportError

PROJECT = "lora_lab"  # conf/logger/wandb.yaml's project


def log_to_wandb(doc: Document, report_dir: Path, sweep_dir: Path, mode: str, project: str = PROJECT) -> Path:
    """Log every table (wandb.Table) and figure (wandb.Image) of `doc`; return the run's local dir."""
    if mode not in ("offline", "online"):
        raise ReportError(
            f"--wandb {mode}: choose offline (written locally, `wandb sync` later) or online (needs `wandb login`)"
        )
    import wandb

    run = wandb.init(
        project=project,
        group=sweep_dir.name,
        job_type="report",
        name=f"report {sweep_dir.name}",
        dir=str(sweep_dir),
        mode=mode,
        config={"sweep_dir": str(sweep_dir.resolve())},
        reinit="create_new",
    )
    try:
        data: dict[str, object] = {
            t.key: wandb.Table(columns=[c.name for c in t.columns], data=t.rows) for t in doc.of_type(Table)
        }
        data.update(
            {Path(f.file).stem: wandb.Image(str(report_dir / f.file), caption=f.caption) for f in doc.of_type(Figure)}
        )
        run.log(data)
    finally:
        run.finish()
    return Path(run.dir).parent
