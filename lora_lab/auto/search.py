"""The rung loop: for each rung, cheapest entry first, reuse a finished job or decide (halving.py) to
launch it with a max_time or skip it; measure what ran; promote the top 1/eta; name the winner.

Everything the loop learns goes to auto.json as it goes (record.py), and the time it spends is counted
from the record's spent_s on, so a rerun of the same command continues both. The clock and the
launcher are parameters: the Hydra sweeper passes time.monotonic and Hydra's launcher, the tests a
fake clock and a fake launcher.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_lab.auto.halving import (
    Estimate,
    Launch,
    Measured,
    Schedule,
    decide,
    from_peers,
    max_time_override,
    promote,
    ranked_entries,
    rung_deadlines,
    rung_weights,
    scaled,
    work,
)
from lora_lab.auto.portfolio import Entry, merged_overrides
from lora_lab.auto.record import CUT, DONE, FAILED, SKIPPED, AutoRecord, JobResult, Rung
from lora_lab.job.checkpointing import RESUME_CHECKPOINT, relocate_checkpoints
from lora_lab.job.dir import PAUSED_KEY, JobDir

log = logging.getLogger(__name__)

# Given, with trainer.max_time, to every gradient job: it validates where the time runs out (cut.py).
CUT_CALLBACK = "lora_lab.auto.cut.ValidateAtCut"
CUT_KEY = "train/cut_at_step"  # in metrics.json: the job was cut
# Given, with its epochs, to every gradient job of an epoch rung below the last (cut.PauseAtEpoch).
PAUSE_CALLBACK = "lora_lab.auto.cut.PauseAtEpoch"
# What the winner's line and auto.json show of its metrics.json, beside the optimized metric.
FIGURES = ("val/acc_best", "test/acc", "test/f1_macro", "time/train_s", "latency/p50_ms", "artifact/adapter_bytes")


@dataclass(frozen=True)
class Candidate:
    """An entry as the search runs it: does its regime train by gradient (max_time can cut it), and the
    size rule's arithmetic of its composed config."""

    entry: Entry
    gradient: bool
    schedule: Schedule

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass(frozen=True)
class JobSpec:
    """One job to launch: its dir's name in the sweep dir and its command line."""

    name: str
    entry: str
    rung: int
    rows: int
    overrides: list[str]
    max_time_s: int | None
    pause_at: int | None = None  # epochs after which the job pauses (epoch rungs), None: to its end
    continues: str | None = None  # the paused job (dir name) this one resumes


# Runs the job to its end; returns its error (the job raised), or None.
LaunchJob = Callable[[JobSpec], "str | None"]


@dataclass
class Settings:
    eta: int
    safety: float
    min_train_share: float
    finish_s: float
    budget_s: float
    epochs: int = 1  # the default job's epochs on all the rows: the last epoch rung's end (rung_weights)


class Search:
    def __init__(
        self,
        sweep_dir: Path,
        candidates: list[Candidate],
        rows: list[int],
        record: AutoRecord,
        settings: Settings,
        launch: LaunchJob,
        metric: str,
        maximize: bool,
        base_overrides: Sequence[str] = (),
        rows_always: bool = False,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_s: float | None = None,
        started: float | None = None,
        epochs: list[int | None] | None = None,
    ):
        """rows: each rung's training rows, the last all of them (record.train_rows). rows_always: pass
        train_rows at the last rung too (the command line set its own). heartbeat_s: while a job runs,
        write the time spent to auto.json this often, so a killed sweep's rerun counts it. started: the
        clock's reading when this run began (default: now). epochs: each rung's pause (halving.rung_epochs;
        None or all None: every job trains its whole schedule)."""
        self.sweep_dir, self.candidates, self.rows, self.record = sweep_dir, candidates, rows, record
        self.epochs = list(epochs) if epochs is not None else [None] * len(rows)
        self.settings, self.launch, self.metric, self.maximize = settings, launch, metric, maximize
        self.base_overrides, self.rows_always = list(base_overrides), rows_always
        self.clock, self.heartbeat_s = clock, heartbeat_s
        self.order = [c.name for c in candidates]  # cheapest first
        self._lock = threading.Lock()
        self._start = clock() if started is None else started
        self._spent_before = record.spent_s

    def elapsed(self) -> float:
        """Seconds of the search so far, earlier runs of the same command included."""
        return self._spent_before + (self.clock() - self._start)

    def save(self) -> None:
        with self._lock:
            self.record.spent_s = round(self.elapsed(), 3)
            self.record.write(self.sweep_dir)

    def run(self) -> AutoRecord:
        """Pass 0 runs the rungs in order, each until its deadline (shares of the budget by expected work). When a
        job was skipped and time is left, backfill passes go over the rungs again with the budget's end
        as every deadline: skipped jobs run if they fit now, promotions are recomputed from every result
        (a late entry that ranks in the top 1/eta goes on up). A pass that launches nothing ends it."""
        previous = {(r.rung, j.entry): j for r in self.record.rungs for j in r.jobs}
        self.record.runs += 1
        self.record.winner = None  # an earlier run's: chosen again once the rungs are rebuilt
        self.results: dict[tuple[int, str], JobResult] = {}
        weights = rung_weights(self.epochs, self.settings.epochs, self.settings.eta)
        shares = rung_deadlines(self.settings.budget_s, self.settings.finish_s, weights)
        launched = self._pass(shares, previous)
        backfill = 0
        while self._skipped() and self.elapsed() < shares[-1] and (backfill == 0 or launched):
            backfill += 1
            log.info("auto: backfill pass %d: skipped jobs, against the budget's end", backfill)
            launched = self._pass([shares[-1]] * len(shares), previous)
        self.record.winner = self.winner()
        self.drop_paused_checkpoints()
        self.save()
        return self.record

    def _pass(self, deadlines: list[float], previous: dict[tuple[int, str], JobResult]) -> int:
        """One pass over the rungs (record.rungs rebuilt); the number of jobs it launched."""
        launched = 0
        self.record.rungs = []
        entrants = [c.name for c in self.candidates]
        for k, (rows, deadline) in enumerate(zip(self.rows, deadlines)):
            rung = Rung(k, rows, round(rows / self.record.train_rows, 4), round(deadline, 1), self.epochs[k])
            self.record.rungs.append(rung)
            # The entries promoted here, and any that has a result here already (promoted in an earlier
            # pass or run, since displaced): a measurement at this rung competes at this rung. Rung 0
            # goes cheapest first (its estimates come from the jobs before); a rung above goes best
            # first, each entry estimated from its own job below, so a short budget cuts the least
            # promising.
            members = [c for c in self.candidates if c.name in entrants or self._has_result(k, c.name)]
            if k > 0:
                members.sort(key=lambda c: entrants.index(c.name) if c.name in entrants else len(entrants))
            log.info(
                "auto: rung %d of %d, %d entries on %d training rows, until %.0f s of the %.0f s budget",
                k,
                len(self.rows) - 1,
                len(members),
                rows,
                deadline,
                self.settings.budget_s,
            )
            for candidate in members:
                result = self.results.get((k, candidate.name))
                if result is None or result.state == SKIPPED:
                    result, ran = self._job(k, rung, candidate, previous.get((k, candidate.name)))
                    self.results[(k, candidate.name)] = result
                    launched += ran
                rung.jobs.append(result)
                self.save()
            if k == len(self.rows) - 1:
                break
            values = {j.entry: j.value for j in rung.jobs if j.has_value}
            promoted = promote(values, self.order, self.settings.eta, self.maximize)
            for job in rung.jobs:
                job.promoted = job.entry in promoted
            log.info("auto: rung %d promotes %s", k, ", ".join(promoted) or "nothing")
            entrants = promoted
            if not entrants and not any(self._has_result(k + 1, name) for name in self.order):
                break
        return launched

    def _has_result(self, k: int, name: str) -> bool:
        """A job of this entry at rung k ran in this run or finished in an earlier one."""
        result = self.results.get((k, name))
        if result is not None:
            return result.state != SKIPPED
        return JobDir(self.sweep_dir / f"r{k}_{name}").is_finished

    def _skipped(self) -> bool:
        return any(j.state == SKIPPED for rung in self.record.rungs for j in rung.jobs)

    def _job(self, k: int, rung: Rung, candidate: Candidate, earlier: JobResult | None) -> tuple[JobResult, bool]:
        """Entry `candidate` at rung k: reused (finished by an earlier run), skipped or launched; and
        whether it was launched."""
        name = f"r{k}_{candidate.name}"
        job_dir = self.sweep_dir / name
        if JobDir(job_dir).is_finished:  # an earlier run of this command finished it
            duration = earlier.duration_s if earlier is not None and earlier.duration_s else _wall_time(job_dir)
            result = self._result(candidate, name, rung.rows, duration, None)
            result.reused = True
            if earlier is not None:
                result.reason, result.estimate_s, result.max_time = earlier.reason, earlier.estimate_s, earlier.max_time
                result.continues = earlier.continues
            log.info("auto: %s finished in an earlier run: %s=%s, not run again", name, self.metric, result.value)
            return result, False
        below = self._below(k, candidate.name)
        if below is not None and below.state == DONE and below.paused_at is None:
            # An epoch rung's job that trained its whole schedule (closed-form, early-stopped, or a
            # schedule no longer than the pause): the job of this rung would be the same job.
            result = JobResult(**{**vars(below), "job": name, "promoted": False, "duration_s": 0.0})
            result.reason = f"{below.job} trained its whole schedule: the same job, not run again"
            return result, False
        continues = below.job if below is not None and below.paused_at is not None else None
        if continues is not None and not (self.sweep_dir / continues / RESUME_CHECKPOINT).is_file():
            continues = None  # its checkpoint is gone (an earlier run of the search ended): train anew
        estimate = self._estimate(k, candidate, rung.rows, continues)
        decision = decide(
            rung.deadline_s - self.elapsed(),
            estimate,
            candidate.gradient,
            self.settings.safety,
            self.settings.min_train_share,
        )
        estimate_s = round(estimate.total_s, 1) if estimate is not None else None
        if not isinstance(decision, Launch):
            log.warning("auto: %s skipped: %s", name, decision.reason)
            skipped = JobResult(candidate.name, name, str(job_dir), rung.rows, SKIPPED, decision.reason)
            skipped.estimate_s = estimate_s
            return skipped, False
        log.info("auto: %s on %d rows: %s", name, rung.rows, decision.reason)
        started = self.clock()
        if continues is not None and not (job_dir / RESUME_CHECKPOINT).is_file():
            try:  # Timer's state left out: the continuation's max_time counts its own training only
                relocate_checkpoints(self.sweep_dir / continues, job_dir, drop_states=("Timer",))
            except Exception as err:  # an unreadable checkpoint, a full disk: a launch without it trains anew
                why = f"{type(err).__name__}: {err}"
                log.error("auto: %s cannot continue %s (%s): training anew", name, continues, why)
                shutil.rmtree(job_dir / RESUME_CHECKPOINT.parent, ignore_errors=True)
                continues = None
        pause_at = rung.epochs if candidate.gradient else None
        spec = JobSpec(name, candidate.name, k, rung.rows, [], decision.max_time_s, pause_at, continues)
        spec.overrides.extend(self._overrides(candidate, spec, decision))
        error = self._launch(spec)
        result = self._result(candidate, name, rung.rows, self.clock() - started, error)
        result.continues = continues
        result.reason = decision.reason if result.state != FAILED else result.reason
        result.estimate_s = estimate_s
        if decision.max_time_s is not None:
            result.max_time = max_time_override(decision.max_time_s)
        log.info("auto: %s %s in %.0f s: %s=%s", name, result.state, result.duration_s or 0, self.metric, result.value)
        return result, True

    def _launch(self, spec: JobSpec) -> str | None:
        """Run the job; meanwhile a heartbeat thread keeps auto.json's spent_s current."""
        if self.heartbeat_s is None:
            return self.launch(spec)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_s):
                self.save()

        thread = threading.Thread(target=beat, name="auto-heartbeat", daemon=True)
        thread.start()
        try:
            return self.launch(spec)
        finally:
            stop.set()
            thread.join()

    def _overrides(self, candidate: Candidate, spec: JobSpec, decision: Launch) -> list[str]:
        """The job's command line: the search's own (less any key the entry sets), the entry's, the
        rung's rows, the time limit, the pause (kept checkpoints) or the resume, the job dir's name."""
        overrides = merged_overrides(self.base_overrides, candidate.entry, drop=["train_rows"])
        if spec.rows < self.record.train_rows or self.rows_always:
            overrides.append(f"train_rows={spec.rows}")
        if decision.max_time_s is not None:
            overrides += [
                f"++trainer.max_time={max_time_override(decision.max_time_s)}",
                f"++callbacks.auto_cut._target_={CUT_CALLBACK}",
            ]
        if spec.pause_at is not None:
            overrides += [
                f"++callbacks.auto_pause._target_={PAUSE_CALLBACK}",
                f"++callbacks.auto_pause.epochs={spec.pause_at}",
                "keep_checkpoints=true",
            ]
        if spec.continues is not None:
            overrides.append("resume=true")
        return [*overrides, f"hydra.sweep.subdir={spec.name}"]

    def _estimate(self, k: int, candidate: Candidate, rows: int, continues: str | None = None) -> Estimate | None:
        """Rung k > 0: this entry's job one rung down. On fewer rows: its training scaled by the work
        ratio (rows x the size rule's epochs). On the same rows (an epoch rung): its training per epoch
        times the epochs left (`continues`: it resumes that job) or all of them (it trains anew).
        Rung 0: the jobs of this rung that finished uncut (halving.from_peers)."""
        below = self.record.rungs[k - 1].job(candidate.name) if k > 0 else None
        if below is not None and below.duration_s is not None:
            if self.rows[k - 1] == self.rows[k] and candidate.gradient:
                end = self.epochs[k] or candidate.schedule.epochs(rows)
                # A job cut before its pause trained less than the pause: a lower bound per epoch.
                trained = below.paused_at or self.epochs[k - 1] or end
                to_go = end - trained if continues is not None else end
                basis = f"{below.job}: {trained} epoch(s) in {below.train_s or 0:.0f} s, {to_go} to train"
                train = (below.train_s or 0.0) * to_go / trained
                return Estimate(self._overhead(k, candidate.name), train, basis)
            ratio = work(rows, candidate.gradient, candidate.schedule) / work(
                below.rows, candidate.gradient, candidate.schedule
            )
            cut = " (cut: a lower bound)" if below.state == CUT else ""
            basis = f"rung {k - 1}: {below.duration_s:.0f} s{cut}, training x {ratio:.2f}"
            return scaled(below.measured(), ratio, basis)
        by_name = {c.name: c for c in self.candidates}
        peers = [
            (by_name[j.entry], self._whole(by_name[j.entry], j) if not candidate.gradient else j.measured())
            for j in self.record.rungs[0].jobs
            if j.state == DONE and j.duration_s
        ]
        if candidate.gradient and any(c.gradient for c, _ in peers):
            peers = [(c, m) for c, m in peers if c.gradient]
        return from_peers(candidate.entry.cost, [(c.entry.cost, m) for c, m in peers], not candidate.gradient)

    def _whole(self, peer: Candidate, job: JobResult) -> Measured:
        """A rung-0 job as its whole schedule would have measured: a job paused after n of its N epochs
        trained n/N of it. What a job no max_time can cut is estimated from (its cost is relative to
        whole jobs, and it cannot be paused)."""
        measured = job.measured()
        if job.paused_at is None:
            return measured
        extra = measured.train_s * (peer.schedule.epochs(job.rows) / job.paused_at - 1)
        return Measured(measured.duration_s + extra, measured.train_s + extra)

    def _below(self, k: int, name: str) -> JobResult | None:
        """The entry's job one rung down when that rung trained on the same rows (an epoch rung), else None."""
        if k == 0 or self.rows[k - 1] != self.rows[k]:
            return None
        return self.record.rungs[k - 1].job(name)

    def _overhead(self, k: int, name: str) -> float:
        """What the rows and epochs do not scale, from the first job of the entry's chain of continuations
        below rung k (a continuation's time/train_s counts the epochs it resumed from too)."""
        for j in reversed(range(k)):
            job = self.record.rungs[j].job(name)
            if job is not None and job.continues is None and job.duration_s is not None:
                return job.measured().overhead_s
        return 0.0

    def drop_paused_checkpoints(self) -> None:
        """The search is over: the checkpoints its pausing rungs' jobs kept (keep_checkpoints=true;
        hundreds of MB each) go, a job that failed after its pause included. A rerun that promotes one
        of them trains it anew."""
        for rung in self.record.rungs:
            if rung.epochs is not None:
                for job in rung.jobs:
                    shutil.rmtree(Path(job.job_dir) / RESUME_CHECKPOINT.parent, ignore_errors=True)

    def _result(self, candidate: Candidate, name: str, rows: int, duration: float, error: str | None) -> JobResult:
        """How the job in sweep_dir/name ended, from its files (JobDir): its metric, training time, cut."""
        job_dir = JobDir(self.sweep_dir / name)
        result = JobResult(candidate.name, name, str(job_dir.path), rows, FAILED, duration_s=round(duration, 2))
        metrics = _metrics(job_dir)
        if metrics is None:
            status = job_dir.status() or {}
            result.reason = error or status.get("error") or f"no metrics.json (status {status.get('state')})"
            return result
        value = metrics.get(self.metric)
        if value is None:
            result.reason = f"metrics.json has no {self.metric}; it has {', '.join(sorted(metrics)[:12])}, ..."
            return result
        result.value, result.train_s = float(value), float(metrics.get("time/train_s") or 0.0)
        result.state = CUT if CUT_KEY in metrics else DONE
        result.paused_at = metrics.get(PAUSED_KEY)
        return result

    def winner(self) -> dict[str, Any] | None:
        """The best job of the highest rung that has a result (rungs of fewer rows compare nothing with it)."""
        for rung in reversed(self.record.rungs):
            ranked = ranked_entries({j.entry: j.value for j in rung.jobs if j.has_value}, self.order, self.maximize)
            if not ranked:
                continue
            job = rung.job(ranked[0])
            assert job is not None
            metrics = _metrics(JobDir(job.job_dir)) or {}
            figures = {key: metrics[key] for key in (self.metric, *FIGURES) if key in metrics}
            return {
                "entry": job.entry,
                "rung": rung.rung,
                "rows": rung.rows,
                "metric": self.metric,
                "value": job.value,
                "state": job.state,
                "job_dir": job.job_dir,
                "overrides": list(next(c.entry.overrides for c in self.candidates if c.name == job.entry)),
                "figures": figures,
            }
        return None


def _metrics(job_dir: JobDir) -> dict[str, Any] | None:
    """The job's metrics.json; a job recorded as the duplicate of another (same effective config) answers
    with the original's. None: the job did not finish."""
    if job_dir.is_finished:
        return job_dir.metrics()
    status = job_dir.status() or {}
    if status.get("state") == "duplicate" and JobDir(status["duplicate_of"]).is_finished:
        return JobDir(status["duplicate_of"]).metrics()
    return None


def _wall_time(job_dir: Path) -> float:
    """A finished job's wall time from its files: Hydra writes .hydra/config.yaml before the job runs, the
    job writes metrics.json last."""
    started = JobDir(job_dir).config_path
    begin = started.stat().st_mtime if started.is_file() else JobDir(job_dir).status_path.stat().st_mtime
    return max(JobDir(job_dir).metrics_path.stat().st_mtime - begin, 0.0)
