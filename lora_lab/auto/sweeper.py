"""The auto search as a Hydra sweeper: successive halving over a portfolio, within a wall-clock budget.

    python -m lora_lab.train -m hparams_search=auto dataset=csv dataset.path=reviews.csv budget_minutes=30 \\
        hydra.sweep.dir=multirun/auto_reviews

Before the first job it checks the settings, keeps the portfolio's entries whose backbone is installed
(portfolio.py), composes each entry's job (a config error names the entry), asks each regime whether it
trains by gradient (then trainer.max_time can cut it) and counts the training rows (the dataset's
split, as the job makes it). Then search.py runs the rungs, one job at a time: the budget is decided
job by job. At the end it writes the report (lora_lab.report) and prints the winner. Job dirs are
named r<rung>_<entry>; rerunning the same command resumes from auto.json (record.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from lora_lab.auto.halving import Schedule, rung_epochs, rung_rows
from lora_lab.auto.portfolio import (
    Entry,
    PortfolioError,
    installed,
    merged_overrides,
    override_key,
    parse_portfolio,
    select,
)
from lora_lab.auto.record import AutoRecord, open_record
from lora_lab.auto.search import Candidate, JobSpec, Search, Settings
from lora_lab.cli.errors import USER_ERROR_EXIT, debugging, exit_with_error
from lora_lab.errors import ConfigError, UserError

log = logging.getLogger(__name__)
# Arguments the signature leaves out: the budget may change between runs; the dataset and the metric
# are signed by what they resolve to.
UNSIGNED_KEYS = ("budget_minutes", "optimized_metric")


class SearchFailedError(RuntimeError):
    """No job of the search produced a value, and some failed."""


class AutoSweeper(Sweeper):
    def __init__(
        self,
        portfolio: Any,
        only: Any,
        eta: int,
        rungs: int,
        min_rows: int | None,
        direction: str,
        safety: float,
        min_train_share: float,
        finish_s: float,
        heartbeat_s: float,
    ):
        def plain(value: Any) -> Any:
            return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

        self.portfolio, self.only = plain(portfolio), plain(only)
        self.eta, self.rungs, self.min_rows, self.direction = eta, rungs, min_rows, direction
        self.safety, self.min_train_share = safety, min_train_share
        self.finish_s, self.heartbeat_s = finish_s, heartbeat_s
        self._job_idx = 0
        self._composed: dict[str, DictConfig] = {}  # entry -> its job's config

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir).resolve()
        self.metric = str(config.optimized_metric)

    def sweep(self, arguments: list[str]) -> None:
        """Run the search; a search that cannot start is one `error:` line, exit 2 (1 when every job that
        ran failed: their tracebacks are in the log above and in their status.json)."""
        started = time.monotonic()
        try:
            self._sweep(arguments, started)
        except (UserError, SearchFailedError) as err:
            if debugging():
                raise
            exit_with_error(err, USER_ERROR_EXIT if isinstance(err, UserError) else 1)

    def _sweep(self, arguments: list[str], started: float) -> None:
        budget_s = self._check_settings()
        fixed = _fixed_arguments(arguments)
        entries = select(parse_portfolio(self.portfolio), self.only)
        n_train, rows_always = self._train_rows()
        # A rerun of another search is refused before any model library loads.
        budget_minutes = float(self.config.budget_minutes)
        record = open_record(
            self.sweep_dir, self._signature(entries, fixed, n_train), budget_minutes, n_train, self.eta
        )
        cache_dir = OmegaConf.select(self.config, "paths.cache_dir", default=None)
        runnable, record.unavailable = installed(entries, Path(cache_dir) if cache_dir else None)
        for name, why in record.unavailable.items():
            log.warning("auto: %s left out: %s", name, why)
        if not runnable:
            raise PortfolioError(
                "nothing installed to run: every entry of the portfolio needs a backbone that is not on this "
                "machine (" + "; ".join(f"{n}: {w}" for n, w in record.unavailable.items()) + ")"
            )
        candidates = self._measured_costs([self._candidate(entry, fixed) for entry in runnable], record)
        default = _schedule(self.config, fixed)
        min_rows = self.min_rows if self.min_rows is not None else default.break_even_rows()
        rows = rung_rows(n_train, self.eta, self.rungs, min_rows)
        epochs: list[int | None] = [None] * len(rows)
        if len(rows) == 1 and self.rungs > 1:  # too few rows to screen on fewer: screen on fewer epochs
            epochs = rung_epochs(default, n_train, self.eta, self.rungs)
            rows = [n_train] * len(epochs)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        finish_s = min(self.finish_s, 0.1 * budget_s)
        settings = Settings(self.eta, self.safety, self.min_train_share, finish_s, budget_s, default.epochs(n_train))
        search = Search(
            self.sweep_dir,
            candidates,
            rows,
            record,
            settings,
            self._launch,
            self.metric,
            self.direction == "maximize",
            base_overrides=fixed,
            rows_always=rows_always,
            heartbeat_s=self.heartbeat_s,
            started=started,  # the checks and the row count above are spent time too
            epochs=epochs,
        )
        log.info(
            "auto: %d entries (%s), rungs of %s training rows%s, eta=%d, budget %.1f min (%.1f min spent before), "
            "jobs in %s",
            len(candidates),
            ", ".join(c.name for c in candidates),
            rows,
            "" if epochs[0] is None else f" pausing after {epochs[:-1]} epoch(s)",
            self.eta,
            budget_minutes,
            record.spent_s / 60,
            self.sweep_dir,
        )
        record = search.run()
        self._report(record)
        search.save()
        print(summary(record, self.sweep_dir), flush=True)
        if record.winner is None:
            failed = [j for r in record.rungs for j in r.jobs if j.state == "failed"]
            if failed:
                lines = "\n".join(f"  {j.job} ({j.job_dir}): {j.reason}" for j in failed)
                raise SearchFailedError(f"no job of the auto search produced {self.metric}; failed:\n{lines}")
            raise ConfigError(
                f"budget_minutes={budget_minutes:g}: no job fitted in it ({record.spent_s / 60:.1f} min spent); "
                "raise budget_minutes and rerun the same command: the search resumes"
            )

    def _check_settings(self) -> float:
        """The search's settings and budget, in seconds; a ConfigError for a value to fix."""
        budget = OmegaConf.select(self.config, "budget_minutes", default=None)
        if budget is None:
            raise ConfigError("budget_minutes is not set: hparams_search=auto defines it, e.g. budget_minutes=30")
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
            raise ConfigError(f"budget_minutes={budget!r}: the search's wall-clock budget, a number of minutes > 0")
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ConfigError(f"hydra.sweeper.eta={self.eta!r}: an integer >= 2 (each rung keeps the top 1/eta)")
        if isinstance(self.rungs, bool) or not isinstance(self.rungs, int) or self.rungs < 1:
            raise ConfigError(f"hydra.sweeper.rungs={self.rungs!r}: an integer >= 1")
        if self.min_rows is not None and (not isinstance(self.min_rows, int) or self.min_rows < 1):
            raise ConfigError(f"hydra.sweeper.min_rows={self.min_rows!r}: a positive integer, or null")
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError(f"hydra.sweeper.direction={self.direction!r}: use maximize or minimize")
        if not 0 <= self.min_train_share <= 1 or self.safety < 0 or self.finish_s < 0 or self.heartbeat_s <= 0:
            raise ConfigError(
                "hydra.sweeper: min_train_share in [0, 1], safety >= 0, finish_s >= 0 and heartbeat_s > 0 "
                f"(got {self.min_train_share}, {self.safety}, {self.finish_s}, {self.heartbeat_s})"
            )
        if "test/" in self.metric:
            raise ConfigError(
                f"optimized_metric={self.metric}: the search ranks entries, which is model selection: rank on a "
                "validation metric (val/acc_best, val/f1_macro); a test figure chosen on is no test any more"
            )
        return float(budget) * 60

    def _candidate(self, entry: Entry, fixed: list[str]) -> Candidate:
        """The entry's job composed as the launcher will compose it: its regime and the size rule's settings."""
        from lora_lab.regimes import regime_class  # the regime's module: torch, as every job loads anyway

        overrides = merged_overrides(fixed, entry)
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        except Exception as err:  # Hydra's composition errors: a missing group option, a bad value
            raise PortfolioError(
                f"portfolio entry {entry.name} ({' '.join(entry.overrides) or 'the default job'}) does not compose: "
                f"{str(err).splitlines()[0]}"
            ) from err
        self._composed[entry.name] = cfg
        return Candidate(entry, regime_class(str(cfg.regime.name)).trains_by_gradient, _schedule(cfg, overrides))

    def _measured_costs(self, candidates: list[Candidate], record: AutoRecord) -> list[Candidate]:
        """The candidates, cheapest first, an entry that sets another backbone than the command's with its
        cost times that backbone's training step time over the command's backbone's, measured here
        (probe.py; kept in auto.json, so a rerun orders alike). A backbone whose step cannot run is
        left out of the search, with the reason."""
        reference = str(self.config.backbone.name)
        backbone = {c.name: str(self._composed[c.name].backbone.name) for c in candidates}
        others = {backbone[c.name]: self._composed[c.name].backbone for c in candidates}
        others.pop(reference, None)
        if not others or self.config.trainer.get("accelerator") != "cpu":  # a GPU's ratio is not the CPU's
            return candidates
        if not set(others) <= set(record.step_ratios):
            from lora_lab.auto.probe import step_ratios

            try:
                record.step_ratios = step_ratios(
                    {reference: self.config.backbone, **others}, reference, str(self.config.trainer.precision)
                )
            except Exception as err:  # weights that do not load, a step that does not run: those entries go
                log.error("auto: timing a training step of %s failed", ", ".join(others), exc_info=err)
                why = f"a training step of its backbone failed: {type(err).__name__}: {err}"
                record.unavailable.update({c.name: why for c in candidates if backbone[c.name] in others})
                return [c for c in candidates if c.name not in record.unavailable]
        measured = [
            dataclasses.replace(c, entry=dataclasses.replace(c.entry, cost=c.entry.cost * record.step_ratios[b]))
            if (b := backbone[c.name]) in others
            else c
            for c in candidates
        ]
        return sorted(measured, key=lambda c: (c.entry.cost, c.name))

    def _train_rows(self) -> tuple[int, bool]:
        """The training rows a job of this command trains on (the dataset's split, few-shot and the command
        line's train_rows applied), and whether the command line set train_rows itself."""
        from hydra.utils import instantiate

        train = instantiate(self.config.dataset).load()["train"]
        n = len(train)
        if (shots := self.config.get("shots_per_class")) is not None:
            n = sum(min(count, int(shots)) for count in train.label_counts().values())
        if (own := self.config.get("train_rows")) is not None:
            return min(n, int(own)), True
        return n, False

    def _signature(self, entries: list[Entry], fixed: list[str], n_train: int) -> dict[str, Any]:
        """What a rerun must repeat to resume this search (record.py)."""
        return {
            "portfolio": {e.name: e.signature() for e in entries},
            "settings": {"eta": self.eta, "rungs": self.rungs, "min_rows": self.min_rows},
            "dataset": {"config": OmegaConf.to_container(self.config.dataset, resolve=True), "train_rows": n_train},
            "optimized_metric": self.metric,
            "direction": self.direction,
            "arguments": [
                o
                for o in fixed
                if override_key(o) not in UNSIGNED_KEYS and override_key(o).split(".")[0] not in ("dataset",)
            ],
        }

    def _launch(self, spec: JobSpec) -> str | None:
        """One job through Hydra's launcher; its error, or None."""
        self._job_idx += 1
        try:
            (job_return,) = self.launcher.launch([spec.overrides], initial_job_idx=self._job_idx)
            job_return.return_value  # noqa: B018 - re-raises the job's exception
        except Exception as err:  # any job error is this job's failure; the search goes on
            log.error("auto: %s failed", spec.name, exc_info=err)
            return f"{type(err).__name__}: {err}"
        return None

    def _report(self, record: AutoRecord) -> None:
        """report/report.html of every job (lora_lab.report); a report that fails is a warning, not the
        end of a search whose jobs are done."""
        from lora_lab.report.build import build_report

        try:
            record.report = str(build_report(self.sweep_dir) / "report.html")
        except Exception as err:
            log.warning(
                "auto: no report (%s: %s); try python -m lora_lab.report %s", type(err).__name__, err, self.sweep_dir
            )


def _fixed_arguments(arguments: list[str]) -> list[str]:
    """The command line's overrides, passed to every job; a sweep of them is refused."""
    parsed = OverridesParser.create().parse_overrides(list(arguments))
    if sweeps := [o.input_line for o in parsed if o.is_sweep_override()]:
        raise ConfigError(
            f"{' '.join(sweeps)}: hparams_search=auto runs its portfolio, not a sweep of the command line; "
            "add the variants to hydra.sweeper.portfolio instead"
        )
    return list(arguments)


def _schedule(cfg: DictConfig, overrides: list[str]) -> Schedule:
    """The size rule's settings in a composed job config (conf/callbacks/default.yaml, conf/trainer/)."""
    keys = {override_key(o) for o in overrides}
    rule = OmegaConf.select(cfg, "callbacks.min_train_steps", default=None)
    trainer = cfg.trainer
    rule_on = (
        rule is not None
        and "trainer.max_epochs" not in keys
        and trainer.get("max_steps", -1) in (-1, None)
        and trainer.get("limit_train_batches", 1.0) in (1.0, None)
    )
    return Schedule(
        batch_size=int(cfg.data.batch_size),
        accumulate=int(trainer.get("accumulate_grad_batches") or 1),
        max_epochs=int(trainer.get("max_epochs") or 1),
        min_steps=int(rule.steps) if rule is not None else 0,
        rule_on=bool(rule_on),
    )


def summary(record: AutoRecord, sweep_dir: Path) -> str:
    """What the search did, rung by rung, its winner, and where the report and auto.json are."""
    lines = [
        f"auto search: {sum(len(r.jobs) for r in record.rungs)} jobs in {len(record.rungs)} rung(s), "
        f"{record.spent_s / 60:.1f} of {record.budget_minutes:g} min (all runs)"
    ]
    for rung in record.rungs:
        paused = f", paused after {rung.epochs} epoch(s)" if rung.epochs is not None else ""
        lines.append(f"  rung {rung.rung} ({rung.rows:,} training rows{paused}):")
        for job in rung.jobs:
            value = f"{job.value:.4f}" if job.value is not None else "-"
            took = f"{job.duration_s:.0f} s" if job.duration_s is not None else ""
            mark = (f" (continues {job.continues})" if job.continues else "") + (" -> promoted" if job.promoted else "")
            why = f" ({job.reason})" if job.state in ("skipped", "failed") else ""
            reused = " (earlier run)" if job.reused else ""
            lines.append(f"    {job.entry:<14} {job.state:<8} {value:>8} {took:>7}{reused}{mark}{why}")
    if record.unavailable:
        lines.append("  not installed: " + "; ".join(f"{n} ({w})" for n, w in record.unavailable.items()))
    if (winner := record.winner) is not None:
        figures = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in winner["figures"].items()
        )
        lines.append(
            f"winner: {winner['entry']} (rung {winner['rung']}, {winner['rows']:,} training rows, {winner['state']}): "
            f"{figures}\n        {winner['job_dir']}"
        )
    else:
        lines.append("winner: none (no job finished with a value)")
    if record.report:
        lines.append(f"report: {record.report}")
    lines.append(f"auto.json: {sweep_dir / 'auto.json'}")
    return "\n".join(lines)
