"""lora_lab's Optuna sweeper: ask a batch of trials, launch them as Hydra jobs, tell the study.

    python -m lora_lab.train -m hparams_search=lora_lr_rank hydra.sweep.dir=multirun/lr_rank

The study lives in an RDB storage (SQLite in the sweep dir by default), so re-running the same
command resumes it, and other processes given the same storage and study name work on it too.
Job dirs are named by trial number, unique within the study: a resumed sweep never reuses one.
With hydra.sweeper.objectives the study has one direction per objective and each trial tells the
values of its job's metrics.json (objectives.py); best_trial.json then holds the Pareto front.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import TrialState

from lora_lab.artifacts import write_json
from lora_lab.cli.errors import USER_ERROR_EXIT, debugging, exit_with_error
from lora_lab.errors import UserError
from lora_lab.job.dir import STATUS_FILE, JobDir
from lora_lab.sweeper import reseed
from lora_lab.sweeper.heartbeat import Heartbeat, alive_attr, late_outcome_attr
from lora_lab.sweeper.ledger import Ledger
from lora_lab.sweeper.objectives import (
    ObjectiveError,
    check_objectives,
    median_rule_settings,
    objective_values,
    pareto_front,
    prunes_first_objective,
    signature_entry,
)
from lora_lab.sweeper.recovery import retry_abandoned_trial
from lora_lab.sweeper.resume import SweepConfigError, check_sweep_dir, open_study
from lora_lab.sweeper.search_space import SearchSpace, override_value, parse_search_space
from lora_lab.sweeper.storage import (
    DUPLICATE_OF_ATTR,
    ERROR_ATTR,
    JOB_DIR_ATTR,
    PRUNED_AT_ATTR,
    RETRY_OF_ATTR,
    SURPLUS_ATTR,
    open_storage,
    storage_url,
    write_study_file,
)

log = logging.getLogger(__name__)
BEST_FILE = "best_trial.json"
# Each trial's job reports its validation metric through this callback, and stops when pruned.
PRUNING_CALLBACK = "lora_lab.sweeper.pruning.OptunaPruning"
# With several objectives: the first one, judged by lora_lab's median rule (pruning.py).
FIRST_OBJECTIVE_PRUNING_CALLBACK = "lora_lab.sweeper.pruning.FirstObjectivePruning"
Values = float | Sequence[float] | None  # what study.tell takes: one objective's value, or one per objective


class SweepFailedError(RuntimeError):
    """More trials failed than hydra.sweeper.max_failure_rate allows."""


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        params: DictConfig,
        direction: str,
        n_trials: int,
        n_jobs: int,
        storage: str | None,
        study_name: str,
        sampler: DictConfig,
        pruner: DictConfig,
        max_failure_rate: float,
        heartbeat_interval: int,
        grace_period: int,
        objectives: DictConfig | dict[str, str] | None = None,
        seeds: int | None = None,
        reseed_top_k: int | None = None,
    ):
        self.params = OmegaConf.to_container(params, resolve=True)
        self.direction, self.n_trials, self.n_jobs = direction, n_trials, n_jobs
        self.objectives_cfg = OmegaConf.to_container(objectives) if OmegaConf.is_config(objectives) else objectives
        self.objectives: dict[str, str] | None = None  # checked in _check_settings
        self.storage, self.study_name = storage, study_name
        self.sampler_cfg = OmegaConf.to_container(sampler, resolve=True)
        self.pruner_cfg = OmegaConf.to_container(pruner, resolve=True)
        self.max_failure_rate = max_failure_rate
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self._outcomes: dict[int, str | None] = {}  # this run's trials -> error (None: COMPLETE/PRUNED)
        self._exhausted = False  # a grid sampler has run every combination
        self.seeds_cfg, self.reseed_top_k = seeds, reseed_top_k
        self.seeds = 1  # per finalist, checked in _check_settings (reseed.py)

    def _check_settings(self) -> None:
        """The sweeper's own settings, checked when the sweep starts (raised while Hydra builds the
        sweeper, an error reaches the user wrapped in Hydra's instantiate message, exit code 1)."""
        if self.direction not in ("maximize", "minimize"):
            raise SweepConfigError(f"hydra.sweeper.direction={self.direction!r}: use maximize or minimize")
        for name in ("n_trials", "n_jobs", "heartbeat_interval"):
            if not isinstance(value := getattr(self, name), int) or value < 1:
                raise SweepConfigError(f"hydra.sweeper.{name}={value!r}: must be a positive integer")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise SweepConfigError(f"hydra.sweeper.max_failure_rate={self.max_failure_rate}: a share in [0, 1]")
        if self.grace_period <= self.heartbeat_interval:
            raise SweepConfigError(
                f"hydra.sweeper.grace_period={self.grace_period} "
                f"must exceed heartbeat_interval={self.heartbeat_interval}, "
                "or live trials would look abandoned between two heartbeats"
            )
        if self.objectives_cfg is not None:
            self.objectives = check_objectives(self.objectives_cfg, self.direction, self.sampler_cfg, self.pruner_cfg)
        self.seeds, self.reseed_top_k = reseed.resolve_settings(self.seeds_cfg, self.reseed_top_k)
        if self.seeds > 1:
            reseed.check_seed_not_searched(self.params)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir).resolve()
        self.optimized_metric = config.optimized_metric
        if self.n_jobs > 1 and config.hydra.launcher._target_.endswith("BasicLauncher"):
            log.warning(
                "hydra.sweeper.n_jobs=%d with the basic launcher: each batch's jobs run one after another. "
                "For parallel jobs on this machine add hydra/launcher=joblib (pip install hydra-joblib-launcher).",
                self.n_jobs,
            )

    def sweep(self, arguments: list[str]) -> None:
        """Run the study; a sweep that cannot start, or whose trials failed, is one `error:` paragraph
        (exit 2 for a config to fix, 1 for failed trials, whose tracebacks are in their logs), as the
        entry points print a job's user error: Hydra would print a traceback."""
        try:
            self._sweep(arguments)
        except (UserError, SweepFailedError) as err:
            if debugging():
                raise
            exit_with_error(err, USER_ERROR_EXIT if isinstance(err, UserError) else 1)

    def _sweep(self, arguments: list[str]) -> None:
        self._check_settings()
        self.url = storage_url(self.storage, self.sweep_dir)
        space = parse_search_space(self.params, arguments)
        check_sweep_dir(self.sweep_dir, self.url, self.study_name)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)  # the default SQLite file lives in it
        storage = open_storage(self.url, self.heartbeat_interval, self.grace_period, retry_abandoned_trial)
        if self.objectives is None:
            signature = {**space.signature(), "optimized_metric": self.optimized_metric}
            directions: str | list[str] = self.direction
        else:
            first = next(iter(self.objectives))
            signature = {**space.signature(), "optimized_metric": first, "objectives": signature_entry(self.objectives)}
            directions = list(self.objectives.values())
            self._warn_if_unprunable()
        study = open_study(storage, self.study_name, directions, signature, self.sampler_cfg, self.pruner_cfg)
        write_study_file(self.sweep_dir, self.url, study, self.optimized_metric, self.objectives)
        log.info(
            "Optuna study %r in %s: %d of n_trials=%d used; jobs in %s",
            self.study_name,
            self.url,
            Ledger(study.get_trials(deepcopy=False)).used,
            self.n_trials,
            self.sweep_dir,
        )
        with Heartbeat(storage, self.url, self.heartbeat_interval) as heartbeat:
            self._run(study, space, heartbeat)
        self._write_best(study)
        if self.seeds > 1:
            self._reseed(study, space)

    def _warn_if_unprunable(self) -> None:
        """One line when a study of objectives can prune nothing: its first objective is not logged
        at each validation. Not an error: the study runs every trial to its end."""
        assert self.objectives is not None
        if median_rule_settings(self.pruner_cfg) is not None and not prunes_first_objective(self.objectives):
            log.warning(
                "hydra.sweeper.objectives: the first objective, %s, is not a validation metric (val/...), so no trial "
                "of this study is pruned; put a val/ metric first to prune on it.",
                next(iter(self.objectives)),
            )

    def _run(self, study: optuna.Study, space: SearchSpace, heartbeat: Heartbeat) -> None:
        """Ask and run batches until n_trials are used and no other worker's trial is still running."""
        while True:
            _fail_stale_trials(study)
            ledger = Ledger(study.get_trials(deepcopy=False))
            left = 0 if self._exhausted else self.n_trials - ledger.used
            # A retry enqueued after the budget filled (a worker asked the dead trial's params
            # anew between the stale check's FAIL and its enqueue) would wait forever, and a resumed
            # sweep would train it: ask it anyway, and _within_budget closes it as surplus.
            to_ask = min(self.n_jobs, left) if left > 0 else ledger.count(TrialState.WAITING)
            if to_ask <= 0:
                if not (running := ledger.running()):
                    return
                # Wait rather than return: a running trial may be a dead worker's, retried once its
                # heartbeat is grace_period old; the sweep is done when the study is.
                log.info(
                    "n_trials=%d used; waiting for trials %s of other workers.",
                    self.n_trials,
                    [t.number for t in running],
                )
                time.sleep(self.heartbeat_interval)
                continue
            batch = self._within_budget(study, [self._ask(study, space) for _ in range(to_ask)])
            heartbeat.track(batch)
            try:
                self._run_batch(study, space, batch)
            finally:
                heartbeat.untrack(batch)
            self._check_failure_rate()

    def _ask(self, study: optuna.Study, space: SearchSpace) -> optuna.Trial:
        with warnings.catch_warnings():
            # The sweeper runs Optuna's optimize loop itself (ask, heartbeat, tell): not a misuse.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            return study.ask(space.distributions)

    def _within_budget(self, study: optuna.Study, batch: list[optuna.Trial]) -> list[optuna.Trial]:
        """The asked trials the budget still has room for; the others (another worker took the last
        slots between our count and our ask) are closed unrun, FAIL with SURPLUS_ATTR, which the
        ledger and the report leave out: exactly n_trials run however many workers race."""
        ledger = Ledger(study.get_trials(deepcopy=False))
        kept = []
        for trial in batch:
            if ledger.is_surplus(trial.number, self.n_trials):
                log.info(
                    "Trial %d: n_trials=%d already taken by other workers; closed unrun.", trial.number, self.n_trials
                )
                trial.set_user_attr(SURPLUS_ATTR, True)
                self._record(study, trial, state=TrialState.FAIL)
            else:
                kept.append(trial)
        return kept

    def _run_batch(self, study: optuna.Study, space: SearchSpace, batch: list[optuna.Trial]) -> None:
        to_launch: list[optuna.Trial] = []
        twins: list[tuple[optuna.Trial, int]] = []  # (trial, the running trial with its params)
        for trial in batch:
            if RETRY_OF_ATTR in trial.user_attrs and not self._retry_is_needed(study, trial):
                continue
            # Read the study after the ask, not before: a twin asked by another worker meanwhile
            # must be seen, or both would train (ledger.py, holder_of, says who trains).
            ledger = self._settled_ledger(study, trial)
            if (original := ledger.complete_with(trial.params)) is not None:
                # The sampler proposed params already trained to completion: same config, same answer.
                self._answer_from(study, trial, original)
                continue
            holder = ledger.holder_of(trial)  # another worker's, or earlier in this batch
            twin = holder.number if holder else next((t.number for t in to_launch if t.params == trial.params), None)
            if twin is not None:
                # Training it again would only race the twin (the job would find it running and
                # record itself as its duplicate, with no value): wait for the twin's outcome instead.
                twins.append((trial, twin))
                continue
            to_launch.append(self._claim_job_dir(study, trial))
        if to_launch:
            self._launch(study, space, to_launch)
        for trial, twin in twins:
            if self._await_twin(study, trial, twin):
                self._launch(study, space, [self._claim_job_dir(study, trial)])

    def _settled_ledger(self, study: optuna.Study, trial: optuna.Trial) -> Ledger:
        """The study's trials, read once every trial numbered below `trial` holds all its params.
        Optuna numbers a trial when it creates it and stores its params one by one after that: a
        twin read in between would look like other params, and both would train. An ask takes
        milliseconds; a worker that died mid-ask leaves such a trial for good (with no heartbeat
        either), so one started more than grace_period s ago is not waited for, and no wait lasts longer."""
        deadline = time.monotonic() + self.grace_period
        while True:
            trials = study.get_trials(deepcopy=False)
            recent = datetime.now() - timedelta(seconds=self.grace_period)  # Optuna stamps datetime_start so
            asking = [
                t
                for t in trials
                if t.state == TrialState.RUNNING
                and t.number < trial.number
                and len(t.params) < len(trial.params)
                and (t.datetime_start or recent) >= recent
            ]
            if not asking or time.monotonic() > deadline:
                return Ledger(trials)
            time.sleep(0.05)

    def _claim_job_dir(self, study: optuna.Study, trial: optuna.Trial) -> optuna.Trial:
        """Name the trial's job dir, <sweep dir>/<number>; refuse one another study's job left there."""
        job_dir = self.sweep_dir / str(trial.number)
        if (job_dir / STATUS_FILE).exists():
            self._fail(study, trial, f"{job_dir} holds a finished job")
            raise SweepConfigError(
                f"{job_dir} holds a finished job, but trial {trial.number} of study {self.study_name!r} is new: "
                f"{self.url} is not the storage that numbered this sweep dir. Choose a new hydra.sweep.dir."
            )
        trial.set_user_attr(JOB_DIR_ATTR, str(job_dir))
        return trial

    def _launch(self, study: optuna.Study, space: SearchSpace, to_launch: list[optuna.Trial]) -> None:
        job_overrides = [self._job_overrides(space, trial) for trial in to_launch]
        try:
            self.validate_batch_is_legal(job_overrides)
        except Exception as err:
            for trial in to_launch:
                self._fail(study, trial, f"config does not compose: {err}")
            raise
        returns = self.launcher.launch(job_overrides, initial_job_idx=to_launch[0].number)
        # Re-read the trials: a job's pruning callback marked its trial from its own process.
        fresh = {t.number: t for t in study.get_trials(deepcopy=False)}
        for trial, job_return in zip(to_launch, returns):
            self._tell(study, trial, job_return, pruned=fresh[trial.number].user_attrs.get(PRUNED_AT_ATTR) is not None)

    def _answer_from(self, study: optuna.Study, trial: optuna.Trial, original: optuna.trial.FrozenTrial) -> None:
        """Record `trial` with the outcome of the finished trial that ran its params (all its values)."""
        self._answer(
            study, trial, original.number, original.state, original.values, original.user_attrs.get(JOB_DIR_ATTR)
        )

    def _answer(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        number: int,
        state: TrialState,
        value: Values,
        job_dir: str | None,
    ) -> None:
        """Record `trial` with trial `number`'s outcome (state, value(s)), as its duplicate."""
        trial.set_user_attr(DUPLICATE_OF_ATTR, number)
        trial.set_user_attr(JOB_DIR_ATTR, job_dir)
        if state == TrialState.FAIL:
            self._fail(study, trial, f"repeats the params of trial {number}, which failed")
            return
        self._finish(study, trial, value if state == TrialState.COMPLETE else None, state)
        log.info("Trial %d repeats trial %d's params: answered with its outcome.", trial.number, number)

    def _await_twin(self, study: optuna.Study, trial: optuna.Trial, twin: int) -> bool:
        """Wait for the running trial `twin` (same params) to finish, then answer `trial` from it.
        Stale checks go on meanwhile. True when the twin's worker died (FAIL with no error: only
        the stale check fails a trial without one): `trial` must then run the params itself, and
        the stale check left them unqueued for that reason (recovery.py)."""
        log.info("Trial %d repeats the params of running trial %d: waiting for its outcome.", trial.number, twin)
        while True:
            _fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            original = next(t for t in trials if t.number == twin)
            if original.state == TrialState.FAIL and ERROR_ATTR not in original.user_attrs:
                # Of the trials waiting on these params (all RUNNING), the first takes them over
                # and the others wait on it: every worker sees the same list, so exactly one runs.
                heir = min(t.number for t in trials if t.state == TrialState.RUNNING and t.params == original.params)
                if heir != trial.number:
                    twin = heir
                    continue
                if self._original_is_dead(study, trial, twin):
                    log.info("Trial %d's worker died: trial %d runs its params.", twin, trial.number)
                    return True
                return False
            if original.state.is_finished():
                self._answer_from(study, trial, original)
                return False
            time.sleep(self.heartbeat_interval)

    def _retry_is_needed(self, study: optuna.Study, trial: optuna.Trial) -> bool:
        """A retry (RETRY_OF_ATTR) runs its trial's params only once that trial's worker is dead."""
        return self._original_is_dead(study, trial, trial.user_attrs[RETRY_OF_ATTR])

    def _original_is_dead(self, study: optuna.Study, trial: optuna.Trial, original: int) -> bool:
        """Did the worker of `original`, failed by a stale check, really die? `trial` is about to
        run its params again. A stale check can take a live worker for dead (one the machine did
        not schedule for grace_period s); that worker's heartbeat process then marks `original`
        alive on each beat (heartbeat.py), and the worker sends its result as a late outcome.
        So: wait until no new mark has come for grace_period s (dead: True), or until the late
        outcome answers `trial` (False). Each mark is compared with the last one seen, never
        with this machine's clock: the workers' clocks may differ."""
        last_mark, deadline = None, time.monotonic() + self.grace_period
        while True:
            attrs = study.user_attrs
            if (outcome := attrs.get(late_outcome_attr(original))) is not None:
                log.info("Trial %d's worker was alive after all: trial %d takes its result.", original, trial.number)
                state = TrialState[outcome["state"]]
                self._answer(study, trial, original, state, outcome["values"], outcome["job_dir"])
                return False
            if (mark := attrs.get(alive_attr(original))) is not None and mark != last_mark:
                last_mark, deadline = mark, time.monotonic() + self.grace_period
            elif time.monotonic() >= deadline:
                return True
            time.sleep(self.heartbeat_interval)

    def _job_overrides(self, space: SearchSpace, trial: optuna.Trial) -> list[str]:
        """The job's command line: the search's fixed overrides, this trial's params, the trial's
        identity (cfg.trial, logged as config) and the callback that reports to it (the job learns of
        its sweep through its config, never an import); its dir is its number."""
        if self.objectives is None:
            reporting = trial_overrides(trial.number, self.study_name, self.url, self.optimized_metric)
        else:
            first = next(iter(self.objectives))
            monitor = first if prunes_first_objective(self.objectives) else None  # nothing to report: no callback
            reporting = trial_overrides(
                trial.number, self.study_name, self.url, monitor, FIRST_OBJECTIVE_PRUNING_CALLBACK
            )
        return [*space.overrides(trial.params), *reporting, f"hydra.sweep.subdir={trial.number}"]

    def _tell(self, study: optuna.Study, trial: optuna.Trial, job_return: JobReturn, pruned: bool) -> None:
        try:
            value: Any = job_return.return_value  # re-raises the job's exception if it failed
        except Exception as err:  # any job error is this trial's failure, recorded below
            log.error("Trial %d: its job raised", trial.number, exc_info=err)
            self._fail(study, trial, f"{type(err).__name__}: {err}")
            return
        if self.objectives is not None:
            self._tell_objectives(study, trial, pruned)
        elif value is None or math.isnan(float(value)):
            self._fail(
                study,
                trial,
                f"the job returned {value} for optimized_metric={self.optimized_metric} (status.json in "
                f"{self.sweep_dir / str(trial.number)} says why: e.g. a duplicate of a job still running)",
            )
        elif pruned:
            self._finish(study, trial, None, TrialState.PRUNED)  # Optuna keeps the last reported value
        else:
            self._finish(study, trial, float(value), TrialState.COMPLETE)

    def _tell_objectives(self, study: optuna.Study, trial: optuna.Trial, pruned: bool) -> None:
        """Several objectives: the values of the job's metrics.json, in the objectives' order."""
        assert self.objectives is not None
        try:
            values = objective_values(self.sweep_dir / str(trial.number), self.objectives)
        except ObjectiveError as err:
            self._fail(study, trial, str(err))
            return
        if pruned:
            self._finish(study, trial, None, TrialState.PRUNED)  # the values of a cut-short fit rank nothing
        else:
            self._finish(study, trial, values, TrialState.COMPLETE)

    def _fail(self, study: optuna.Study, trial: optuna.Trial, error: str) -> None:
        log.error("Trial %d failed: %s", trial.number, error)
        self._finish(study, trial, None, TrialState.FAIL, error)

    def _finish(
        self, study: optuna.Study, trial: optuna.Trial, value: Values, state: TrialState, error: str | None = None
    ) -> None:
        """Tell the study how `trial` ended. If another worker's stale check failed it while this
        worker ran it (taken for dead), Optuna refuses any write to it: the outcome goes to a
        study user attr instead, which answers the trial that waits to retry its params."""
        try:
            if error is not None:
                trial.set_user_attr(ERROR_ATTR, error)
            self._record(study, trial, value if state == TrialState.COMPLETE else None, state)
        except (UpdateFinishedTrialError, ValueError):
            frozen = study._storage.get_trial(trial._trial_id)
            if frozen.state != TrialState.FAIL or ERROR_ATTR in frozen.user_attrs:
                raise
            values = [value] if isinstance(value, (int, float)) else value
            outcome = {"state": state.name, "values": values, "job_dir": frozen.user_attrs.get(JOB_DIR_ATTR)}
            study.set_user_attr(late_outcome_attr(trial.number), outcome)
            log.warning(
                "Trial %d was taken for dead by another worker while this one ran it; its outcome (%s) goes to "
                "the trial that retries its params.",
                trial.number,
                outcome,
            )
            error = None  # not this run's failure: the retry counts it
        self._outcomes[trial.number] = error

    def _record(
        self, study: optuna.Study, trial: optuna.Trial, value: Values = None, state: TrialState | None = None
    ) -> None:
        """study.tell, plus the end of a grid: BruteForceSampler calls Study.stop() once every
        combination has run, which Optuna allows only inside Study.optimize (the trial is stored
        before that raises). Here it ends the sweep."""
        try:
            study.tell(trial, value, state=state)
        except RuntimeError as err:
            if "Study.stop" not in str(err):
                raise
            log.info("The sampler has run every combination of the search space: the sweep ends.")
            self._exhausted = True

    def _write_front(self, study: optuna.Study, counts: dict[str, int]) -> None:
        """best_trial.json of a study of objectives: its Pareto front, each member's values by metric."""
        assert self.objectives is not None
        front = pareto_front(study, self.objectives)
        write_json(self.sweep_dir / BEST_FILE, front)
        log.info("Pareto front of %s over %s:", counts, ", ".join(f"{m} ({d})" for m, d in self.objectives.items()))
        for member in front["pareto_front"]:
            log.info(
                "  trial %d: %s, params %s (%s)",
                member["number"],
                member["values"],
                member["params"],
                member["job_dir"],
            )

    def _reseed(self, study: optuna.Study, space: SearchSpace) -> None:
        """Train the finalists again on more seeds (reseed.py); a failed job fails the sweep (exit 1),
        and the same command runs it again."""
        front = self.objectives is not None
        first_goal = next(iter(self.objectives.values())) if self.objectives else self.direction
        trials = study.get_trials(deepcopy=False)
        best = study.best_trials if front and any(t.state == TrialState.COMPLETE for t in trials) else []
        chosen = reseed.finalists(trials, best, first_goal == "maximize", self.reseed_top_k, front)
        jobs = reseed.reseed_jobs(chosen, int(self.config.seed), self.seeds)
        mine = reseed.to_run(self.sweep_dir, jobs)
        log.info(
            "Reseeding trials %s to %d seeds each: %d jobs, %d finished before, %d to run here.",
            [t.number for t in chosen],
            self.seeds,
            len(jobs),
            sum(JobDir(self.sweep_dir / j.name).is_finished for j in jobs),
            len(mine),
        )
        if not mine:
            return
        overrides = [[*space.overrides(j.params), f"seed={j.seed}", f"hydra.sweep.subdir={j.name}"] for j in mine]
        try:
            returns = self.launcher.launch(overrides, initial_job_idx=len(trials))
        finally:
            for job in mine:
                reseed.release(self.sweep_dir, job)
        failed = []
        for job, job_return in zip(mine, returns):
            try:
                job_return.return_value  # noqa: B018 - re-raises the job's exception
            except Exception as err:  # any job error fails its reseed job, listed below
                log.error("Reseed job %s raised", job.name, exc_info=err)
                failed.append(f"  {self.sweep_dir / job.name}: {type(err).__name__}: {err}")
        if failed:
            raise SweepFailedError(
                f"{len(failed)} of {len(mine)} reseed jobs failed:\n" + "\n".join(failed) + "\nFix the cause and "
                "re-run the same command: finished trials and reseed jobs are kept, the failed ones run again."
            )
        log.info("Seeds done: python -m lora_lab.report %s gives each finalist's mean ± 95%% CI.", self.sweep_dir)

    def _check_failure_rate(self) -> None:
        failed = {n: e for n, e in self._outcomes.items() if e is not None}
        if failed and len(failed) / len(self._outcomes) > self.max_failure_rate:
            lines = "\n".join(f"  trial {n} ({self.sweep_dir / str(n)}): {e}" for n, e in sorted(failed.items()))
            raise SweepFailedError(
                f"{len(failed)} of {len(self._outcomes)} trials of this run failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate}:\n{lines}\n"
                "Tracebacks: in the log above, and in a job's status.json once it started. Fix the cause and re-run "
                "the same command: the study resumes and keeps its finished trials. Or allow more failures with "
                "hydra.sweeper.max_failure_rate."
            )

    def _write_best(self, study: optuna.Study) -> None:
        """<sweep dir>/best_trial.json and a summary line: what the sweep found."""
        ledger = Ledger(study.get_trials(deepcopy=False))
        counts = {s.name: ledger.count(s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        if not counts["COMPLETE"]:
            log.warning("Optuna study %r has no COMPLETE trial (%s): no best trial.", self.study_name, counts)
            return
        if self.objectives is not None:
            self._write_front(study, counts)
            return
        best = study.best_trial
        write_json(
            self.sweep_dir / BEST_FILE,
            {
                "number": best.number,
                "value": best.value,
                "params": best.params,
                "job_dir": best.user_attrs.get(JOB_DIR_ATTR),
            },
        )
        log.info(
            "Best of %s: trial %d, %s=%.4f, params %s (%s)",
            counts,
            best.number,
            self.optimized_metric,
            best.value,
            best.params,
            best.user_attrs.get(JOB_DIR_ATTR),
        )


def trial_overrides(
    number: int, study_name: str, storage: str, monitor: str | None, callback: str = PRUNING_CALLBACK
) -> list[str]:
    """What makes a job a trial's: its identity (cfg.trial, logged with the config) and the pruning
    callback that reports `monitor` to it, both as overrides of the job's own config (no callback
    when monitor is None: a study of objectives whose first is no validation metric)."""
    identity = {"number": number, "study_name": study_name, "storage": storage}
    if monitor is None:
        return [f"++trial.{key}={override_value(value)}" for key, value in identity.items()]
    return [
        *(f"++trial.{key}={override_value(value)}" for key, value in identity.items()),
        f"++callbacks.optuna_pruning._target_={callback}",
        *(f"++callbacks.optuna_pruning.{key}={override_value(value)}" for key, value in identity.items()),
        f"++callbacks.optuna_pruning.monitor={override_value(monitor)}",
    ]


def _fail_stale_trials(study: optuna.Study) -> None:
    """A dead worker's trials (heartbeat older than the grace period) -> FAIL, and their retry enqueued."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats are "experimental" since 2.9
        optuna.storages.fail_stale_trials(study)
