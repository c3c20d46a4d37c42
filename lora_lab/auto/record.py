"""auto.json, in the sweep dir: the search's plan, each rung's jobs and how they ended, the winner, and
the time spent so far, which a rerun of the same command goes on counting from.

A rerun must be the same search: its signature (portfolio, rung settings, dataset and its training
rows, metric and direction, the command's other overrides) is stored here, and a rerun whose signature
differs is refused, naming what changed. budget_minutes may change: a rerun with a larger budget goes on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lora_lab.artifacts import read_json, write_json
from lora_lab.auto.halving import Measured
from lora_lab.errors import ConfigError
from lora_lab.job.dir import STATUS_FILE

AUTO_FILE = "auto.json"
OPTUNA_STUDY_FILE = "study.json"  # lora_lab.sweeper's mark on its sweep dirs

DONE, CUT, FAILED, SKIPPED = "done", "cut", "failed", "skipped"


class AutoDirError(ConfigError):
    """The sweep dir holds another search, or something else, than this command would resume."""


@dataclass
class JobResult:
    """One entry at one rung: launched (done, cut or failed) or skipped, and why."""

    entry: str
    job: str  # the job dir's name in the sweep dir, r<rung>_<entry>
    job_dir: str
    rows: int
    state: str
    reason: str = ""
    estimate_s: float | None = None
    max_time: str | None = None  # the trainer.max_time it was given (gradient jobs)
    duration_s: float | None = None
    train_s: float | None = None
    value: float | None = None
    promoted: bool = False
    reused: bool = False  # finished by an earlier run of the same command: not run again
    paused_at: int | None = None  # the epochs it trained before pausing (an epoch rung below the last)
    continues: str | None = None  # the paused job (dir name) it resumed

    @property
    def has_value(self) -> bool:
        return self.state in (DONE, CUT) and self.value is not None

    def measured(self) -> Measured:
        return Measured(self.duration_s or 0.0, self.train_s or 0.0)


@dataclass
class Rung:
    rung: int
    rows: int
    fraction: float  # of the training rows
    deadline_s: float  # of the sweep's time, by which this rung's jobs must end
    epochs: int | None = None  # an epoch rung's pause (halving.rung_epochs); None: whole schedules
    jobs: list[JobResult] = field(default_factory=list)

    def job(self, entry: str) -> JobResult | None:
        return next((j for j in self.jobs if j.entry == entry), None)


@dataclass
class AutoRecord:
    signature: dict[str, Any]
    budget_minutes: float
    train_rows: int
    eta: int
    spent_s: float = 0.0  # every run of this search, up to the last write
    runs: int = 0
    rungs: list[Rung] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # entry -> why it cannot run here
    # backbone -> its training step's seconds over the default job's backbone's, measured here (probe.py)
    step_ratios: dict[str, float] = field(default_factory=dict)
    winner: dict[str, Any] | None = None
    report: str | None = None

    def write(self, sweep_dir: Path) -> None:
        write_json(sweep_dir / AUTO_FILE, asdict(self))

    def previous(self, rung: int, entry: str) -> JobResult | None:
        """What an earlier run recorded for this entry at this rung."""
        return self.rungs[rung].job(entry) if rung < len(self.rungs) else None


def load_record(path: Path) -> AutoRecord:
    data = read_json(path)
    rungs = [Rung(**{**r, "jobs": [JobResult(**j) for j in r["jobs"]]}) for r in data.pop("rungs", [])]
    return AutoRecord(**data, rungs=rungs)


def open_record(
    sweep_dir: Path, signature: dict[str, Any], budget_minutes: float, train_rows: int, eta: int
) -> AutoRecord:
    """This search's record: the one in sweep_dir when its signature matches, else a new one. A sweep dir
    holding another search, an Optuna study or a plain multirun's jobs is refused."""
    path = sweep_dir / AUTO_FILE
    if not path.is_file():
        if (sweep_dir / OPTUNA_STUDY_FILE).is_file() or any(sweep_dir.glob(f"*/{STATUS_FILE}")):
            raise AutoDirError(
                f"hydra.sweep.dir={sweep_dir} holds the jobs of another sweep (no {AUTO_FILE}): not this auto "
                "search's. Choose a new hydra.sweep.dir."
            )
        return AutoRecord(signature=signature, budget_minutes=budget_minutes, train_rows=train_rows, eta=eta)
    record = load_record(path)
    if changes := signature_changes(record.signature, signature):
        raise AutoDirError(
            f"hydra.sweep.dir={sweep_dir} holds an auto search with another "
            + "; another ".join(changes)
            + ". Rerun the command that started it to resume it, or choose a new hydra.sweep.dir."
        )
    record.budget_minutes = budget_minutes
    return record


# signature key -> how the refusal names it
WHAT = {
    "portfolio": "portfolio",
    "settings": "rung setting (hydra.sweeper.eta, rungs, min_rows)",
    "dataset": "dataset",
    "optimized_metric": "metric (optimized_metric)",
    "direction": "direction (hydra.sweeper.direction)",
    "arguments": "command line",
}


def signature_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two signatures, one phrase each: `portfolio: was ..., now ...`."""
    changes = []
    for key in sorted(set(stored) | set(current), key=lambda k: list(WHAT).index(k) if k in WHAT else len(WHAT)):
        was, now = stored.get(key), current.get(key)
        if was != now:
            changes.append(f"{WHAT.get(key, key)}: {_difference(was, now)}")
    return changes


def _difference(was: Any, now: Any) -> str:
    """The keys that differ when both are mappings (e.g. which portfolio entries), else both values."""
    if isinstance(was, dict) and isinstance(now, dict):
        parts = []
        for key in sorted(set(was) | set(now), key=str):
            if key not in now:
                parts.append(f"{key} removed")
            elif key not in was:
                parts.append(f"{key} added")
            elif was[key] != now[key]:
                parts.append(f"{key} was {was[key]!r}, now {now[key]!r}")
        return ", ".join(parts)
    return f"was {was!r}, now {now!r}"
