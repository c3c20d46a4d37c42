"""Which configuration is worth its compute: the Pareto front of the sweep's objectives, its knee,
the best configuration under each constraint, and the commands that serve or export them.

Objectives: a multi-objective sweep's own (study.json `objectives`); otherwise the sweep's metric
(study.json's `optimized_metric`, else `val/acc_best`), maximised, with `latency/p50_ms` (one text
at a time: job/latency.py) and `artifact/adapter_bytes` minimised. Each configuration is the mean
over its seeds. Selection metrics are validation figures; test accuracy is shown, never used.

A configuration is on the front when no other is at least as good on every objective and better
on one. The knee is the front member closest to the ideal point once each objective is scaled to
[0, 1] over the front (0 its best value, 1 its worst): the one that gives up least, everywhere,
at once. It needs no weights, and scaling makes bytes and milliseconds comparable.

Constraint lines use the promotion rule itself (job/pick.py), so the line and the command under it
name the same job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lora_lab.errors import ConfigError
from lora_lab.job.pick import Pick, parse_pick, pick_job, ranking
from lora_lab.report.aggregate import REPORTED_METRIC, ConfigGroup, best_job, knee, non_dominated
from lora_lab.report.document import Column, Paragraph, Table

# What a service pays for, minimised beside the sweep's own metric when it names no objectives.
COST_OBJECTIVES = {"latency/p50_ms": "minimize", "artifact/adapter_bytes": "minimize"}
# The constraints the report answers unless given others (python -m lora_lab.report --constraint ...).
DEFAULT_CONSTRAINTS = ("latency/p50_ms<=5", "latency/p50_ms<=20", "artifact/adapter_bytes<=1048576")
FRONT, KNEE = "★", "◆"


@dataclass
class Front:
    objectives: dict[str, str]  # metric -> maximize | minimize, in order
    groups: list[ConfigGroup]  # the configurations with every objective
    members: list[int]  # indices into groups
    knee: int | None

    def values(self, i: int) -> list[float]:
        return [self.groups[i].mean(m) for m in self.objectives]


def objectives_of(sweep_dir: Path, spec: dict | None) -> dict[str, str]:
    """The sweep's objectives (see the module docstring)."""
    if spec and spec.get("objectives"):
        return dict(spec["objectives"])
    metric, maximize = ranking(sweep_dir)
    return {metric: "maximize" if maximize else "minimize", **COST_OBJECTIVES}


def build_front(groups: Sequence[ConfigGroup], objectives: dict[str, str]) -> Front:
    """The front of the configurations that have every objective."""
    usable = [g for g in groups if all(g.mean(m) is not None for m in objectives)]
    maximize = [d == "maximize" for d in objectives.values()]
    points = [[g.mean(m) for m in objectives] for g in usable]
    members = non_dominated(points, maximize)
    k = knee([points[i] for i in members], maximize)
    return Front(dict(objectives), usable, members, members[k] if k is not None else None)


def front_table(front: Front) -> Table:
    """Every configuration with the objectives, front members and the knee marked."""
    columns = [Column("configuration"), Column("seeds")]
    columns += [Column(m, ".4f" if d == "maximize" else ".4g") for m, d in front.objectives.items()]
    columns += [Column(REPORTED_METRIC, ".4f"), Column("front"), Column("job dir")]
    rows = []
    for i, group in enumerate(front.groups):
        mark = (FRONT if i in front.members else "") + (KNEE if i == front.knee else "")
        values = front.values(i)
        rows.append([group.label, group.n, *values, group.mean(REPORTED_METRIC), mark, str(best_job(group).path)])
    order = sorted(range(len(rows)), key=lambda i: (i not in front.members, -(rows[i][2] or 0)))
    return Table("front", columns, [rows[i] for i in order])


def recommendations(sweep_dir: Path, front: Front, constraints: Sequence[str]) -> list[Paragraph]:
    """One line per recommendation (best, knee, each constraint) with its serve and export commands."""
    name = _adapter_name(front)
    lines = []
    metric = ranking(sweep_dir)[0]
    for rule in ("best", *constraints):
        what = f"best {metric}" + (f" with {rule}" if rule != "best" else "")
        try:
            lines.append(_line(what, pick_job(sweep_dir, rule), name, sweep_dir, rule))
        except ConfigError as err:  # nothing meets it, or no job has the metric: the report says so
            lines.append(Paragraph(f"{what}: none. {err}"))
    if front.knee is not None:
        group = front.groups[front.knee]
        job = best_job(group)
        figures = ", ".join(f"{m} {v:.4g}" for m, v in zip(front.objectives, front.values(front.knee)))
        lines.append(
            Paragraph(
                f"knee of the front: {group.label} ({figures}; {job.path}). "
                f"Serve: `python -m lora_lab.serve adapters.{name}={job.path}`; "
                f"export: `python -m lora_lab.export run_dir={job.path} out=exports/{name}`"
            )
        )
    return lines


def check_constraints(constraints: Sequence[str]) -> None:
    """Refuse a malformed constraint before the report is built (job/pick.py's grammar)."""
    for rule in constraints:
        parse_pick(rule)


def _line(what: str, pick: Pick, name: str, sweep_dir: Path, rule: str) -> Paragraph:
    trial = f"trial {pick.trial}" if pick.trial is not None else pick.job_dir.name
    figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in pick.figures.items())
    quoted = rule if rule == "best" else f'"{rule}"'
    return Paragraph(
        f"{what}: {trial} ({figures}; {pick.job_dir}). "
        f"Serve: `python -m lora_lab.serve adapters.{name}={sweep_dir} pick={quoted}`; "
        f"export: `python -m lora_lab.export run_dir={sweep_dir} pick={quoted} out=exports/{name}`"
    )


def _adapter_name(front: Front) -> str:
    datasets = {str(g.first.dataset) for g in front.groups}
    return datasets.pop() if len(datasets) == 1 else "model"
