"""Promotion: which finished job of a sweep dir to serve or export (`pick=`).

    python -m lora_lab.serve adapters.fpb=multirun/fpb_front pick=best
    python -m lora_lab.export run_dir=multirun/fpb_front pick="latency/p50_ms<=5" out=exports/fpb

`pick=best` takes the job the sweep ranks first: its `optimized_metric` in its `direction` (from
the sweep's study.json; the first objective of a multi-objective study), else `val/acc_best`,
higher is better. A constraint, or several joined by `&`, keeps the jobs that meet every one and
then takes the best of those by the same metric: `pick="latency/p50_ms<=5&artifact/adapter_bytes<=2e6"`.
The ranking metric is a validation figure, never a test one: picking on test would make the test
score of the promoted job optimistic.

Only jobs whose status is `complete` are candidates: a pruned trial stopped early, a duplicate
answers from its original (which is a candidate itself), a failed one shipped nothing. Nor is a job
the auto search paused after its first epochs: the job that continued it is the candidate.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_lab.artifacts import read_json
from lora_lab.errors import ConfigError
from lora_lab.job.dir import METRICS_FILE, PAUSED_KEY, JobDir

STUDY_FILE = "study.json"  # written by lora_lab's sweeper (sweeper/storage.py)
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
CONSTRAINT = re.compile(r"^\s*(?P<metric>[\w./-]+)\s*(?P<op><=|>=|<|>)\s*(?P<bound>[-+]?[\d.]+(?:e[-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    bound: float

    def holds(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"


@dataclass(frozen=True)
class Pick:
    """The promoted job and why: what a server or an export logs."""

    job_dir: Path
    trial: int | None
    rank_metric: str
    figures: dict[str, Any]
    candidates: int  # complete jobs of the sweep
    eligible: int  # of which met the constraints

    def describe(self, rule: str) -> str:
        trial = f"trial {self.trial}" if self.trial is not None else "job"
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in self.figures.items())
        eligible = f"{self.eligible} of {self.candidates} complete jobs eligible"
        return f"pick={rule}: {trial} ({self.job_dir}), {eligible}; {shown}"


def parse_pick(rule: str) -> list[Constraint]:
    """`best` -> []; `metric<=x&metric2>y` -> its constraints; anything else is a ConfigError."""
    rule = str(rule).strip()
    if rule == "best":
        return []
    constraints = []
    for part in rule.split("&"):
        if (match := CONSTRAINT.match(part)) is None:
            raise ConfigError(
                f"pick={rule!r}: {part.strip()!r} is not a constraint; use pick=best, or "
                'pick="<metric><=|>=|<|><number>" joined by &, e.g. pick="latency/p50_ms<=5&val/f1_macro>=0.9"'
            )
        constraints.append(Constraint(match["metric"], match["op"], float(match["bound"])))
    return constraints


def ranking(sweep_dir: Path) -> tuple[str, bool]:
    """The metric the sweep optimised and whether higher is better (study.json; else val/acc_best)."""
    if (sweep_dir / STUDY_FILE).is_file():
        spec = read_json(sweep_dir / STUDY_FILE)
        return str(spec.get("optimized_metric", "val/acc_best")), spec.get("direction", "maximize") == "maximize"
    return "val/acc_best", True


def complete_jobs(sweep_dir: Path) -> list[JobDir]:
    """The sweep's finished jobs whose status is complete and that were not paused, in job-dir order."""
    jobs = [JobDir(p.parent) for p in sorted(sweep_dir.glob(f"*/{METRICS_FILE}"))]
    complete = [job for job in jobs if (job.status() or {}).get("state", "complete") == "complete"]
    return [job for job in complete if PAUSED_KEY not in job.metrics()]


def pick_job(sweep_dir: Path, rule: str = "best") -> Pick:
    """The job of `sweep_dir` that `rule` promotes; a ConfigError names an unknown metric, or the
    constraint nothing meets with the closest value seen."""
    constraints = parse_pick(rule)
    metric, maximize = ranking(sweep_dir)
    jobs = complete_jobs(sweep_dir)
    if not jobs:
        raise ConfigError(f"{sweep_dir}: no complete job to pick from (pick={rule}); is it a sweep dir?")
    figures = {job.path: job.metrics() for job in jobs}
    for name in [metric, *(c.metric for c in constraints)]:
        if not any(_number(m.get(name)) is not None for m in figures.values()):
            known = sorted({k for m in figures.values() for k, v in m.items() if _number(v) is not None})
            raise ConfigError(f"pick={rule}: no job of {sweep_dir} has a metric {name!r}; known: {', '.join(known)}")
    eligible = [job for job in jobs if all(_meets(figures[job.path], c) for c in constraints)]
    if not eligible:
        closest = "; ".join(_closest(c, figures.values()) for c in constraints)
        raise ConfigError(f"pick={rule}: none of the {len(jobs)} complete jobs of {sweep_dir} meets it ({closest})")
    scored = [job for job in eligible if _number(figures[job.path].get(metric)) is not None]
    best = (max if maximize else min)(scored, key=lambda job: figures[job.path][metric])
    shown = [metric, *(c.metric for c in constraints if c.metric != metric)]
    return Pick(
        best.path,
        _trial_number(best),
        metric,
        {name: figures[best.path].get(name) for name in shown},
        len(jobs),
        len(eligible),
    )


def is_sweep_dir(path: Path) -> bool:
    """A dir of finished jobs (a multirun or an Optuna sweep), not itself a job."""
    return not JobDir(path).is_finished and any(path.glob(f"*/{METRICS_FILE}"))


def promote(path: Path, rule: str = "best") -> tuple[Path, Pick | None]:
    """The dir to serve or export for `path`: a sweep dir's picked job, anything else as it is.
    A constraint on something that is not a sweep is refused rather than ignored."""
    if is_sweep_dir(path):
        pick = pick_job(path, rule)
        return pick.job_dir, pick
    if parse_pick(rule):
        raise ConfigError(f"pick={rule}: chooses among a sweep's jobs, and {path} is not a sweep dir; drop pick=")
    return path, None


def _meets(metrics: dict[str, Any], constraint: Constraint) -> bool:
    value = _number(metrics.get(constraint.metric))
    return value is not None and constraint.holds(value)


def _closest(constraint: Constraint, all_metrics: Any) -> str:
    values = [v for m in all_metrics if (v := _number(m.get(constraint.metric))) is not None]
    seen = min(values) if constraint.op in ("<=", "<") else max(values)
    return f"{constraint}: the {'lowest' if constraint.op in ('<=', '<') else 'highest'} is {_fmt(seen)}"


def _number(value: object) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _trial_number(job: JobDir) -> int | None:
    """The Optuna trial a job ran (its config's trial.number); a grid job: its dir's number."""
    trial = job.config().get("trial") if job.config_path.is_file() else None
    if trial is not None and trial.get("number") is not None:
        return int(trial.number)
    return int(job.path.name) if job.path.name.isdigit() else None


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
