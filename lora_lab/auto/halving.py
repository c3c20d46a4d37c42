"""Successive halving under a wall-clock budget: pure functions on numbers, no files, no clock.

The resource is the training rows (`train_rows=<n>`, seeded, one row of every label first) where the
dataset is large enough, else the epochs:
- a rung can cost less than one epoch: on 2 CPU cores one epoch of a large dataset with MPNet or a
  full fine-tune outlasts a 30-minute budget, and epochs cannot go below 1;
- it shrinks every entry's cost, not only the gradient ones': TF-IDF's fit, the contrastive regime's
  pairs (num_iterations x rows) and the head's logistic-regression start all scale with the rows,
  while they ignore trainer.max_epochs;
- validation and test stay whole, so every rung ranks on the same validation rows;
- the size rule (lora_lab/callbacks/min_steps.py) stays on: a rung's job is the default job on fewer
  rows, trained for at least 100 optimizer steps. Setting trainer.max_epochs (the other resource)
  would switch the rule off, since a sweeper's overrides count as the command line, and a LoRA of
  6 steps ranks below the bag of words (the rule's reason).
The size rule sets a floor: below rows x max_epochs = steps x batch_size (1,067 rows at 3 epochs, 100
steps, batch 32) a job trains the same 100 steps, so a smaller rung saves nothing. The rungs' rows
are therefore eta^-k of the training rows, at least that break-even, and a rung is kept only when it
costs at most half of the rung above it (`rung_rows`).

A dataset under twice the break-even gets one row rung; it is screened on epochs instead
(`rung_epochs`): every rung trains on all the rows, the lower ones pause each gradient job after a
share of its schedule's epochs, and the rung above resumes that very run (its checkpoint, resume=true)
rather than training it again. Nothing changes in the job's schedule, so a continued job ends exactly
as an uninterrupted one would (tests/unit/test_auto_search.py), and the screening costs the promoted
entries nothing extra.

eta = 3: a rung keeps the top third. The default portfolio of 7 runs 7 -> 3 -> 1 in three row rungs
(1/9, 1/3, all rows): 11 jobs. eta = 2 would need four rungs for the same entries (7 -> 4 -> 2 -> 1),
and each job pays a fixed cost (model load, validation, test, TF-IDF stack, artifacts, latency) that
the rows do not shrink.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# A gradient job measured nothing yet (the first of the sweep): this share of the time left is kept
# for its work outside training (model load, validation, test, stack, artifacts).
UNMEASURED_RESERVE = 0.5
# Lightning's max_time counts whole seconds.
MIN_TRAIN_S = 1


def rung_fractions(eta: int, rungs: int) -> list[float]:
    """Rung k's share of the training rows, cheapest first: eta^-(rungs-1-k), the last 1."""
    return [float(eta) ** -(rungs - 1 - k) for k in range(rungs)]


def rung_rows(n_train: int, eta: int, rungs: int, min_rows: int) -> list[int]:
    """The training rows of each rung, cheapest first, the last all n_train.

    A rung below the top has max(min_rows, fraction x n_train) rows and is kept only when that is at
    most half the rows of the rung above it; otherwise it and every cheaper one are dropped (they would
    screen at nearly the cost of the rung above)."""
    rows = [n_train]
    for fraction in reversed(rung_fractions(eta, rungs)[:-1]):
        n = max(min_rows, math.ceil(fraction * n_train))
        if 2 * n > rows[0]:
            break
        rows.insert(0, n)
    return rows


@dataclass(frozen=True)
class Schedule:
    """How many epochs a job trains on `rows` rows: the size rule's arithmetic (callbacks/min_steps.py)."""

    batch_size: int = 32
    accumulate: int = 1
    max_epochs: int = 3
    min_steps: int = 100
    rule_on: bool = True  # off: trainer.max_epochs / max_steps / limit_train_batches set, or steps=0

    def epochs(self, rows: int) -> int:
        every = self.validation_every(rows)
        if every == 1:
            return self.max_epochs
        return every * math.ceil(self._needed(rows) / every)

    def validation_every(self, rows: int) -> int:
        """The epochs between two validations: 1, or what the size rule sets on a small training set."""
        needed = self._needed(rows)
        return 1 if needed <= self.max_epochs else math.ceil(needed / self.max_epochs)

    def _needed(self, rows: int) -> int:
        """The epochs min_steps needs at this size (at most max_epochs when the rule is off)."""
        if not self.rule_on or self.min_steps <= 0:
            return self.max_epochs
        per_epoch = math.ceil(math.ceil(rows / self.batch_size) / self.accumulate)
        return max(self.max_epochs, math.ceil(self.min_steps / per_epoch))

    def break_even_rows(self) -> int:
        """The fewest rows the size rule leaves at max_epochs: fewer cost the same min_steps steps."""
        if not self.rule_on or self.min_steps <= 0:
            return self.batch_size * self.accumulate
        return math.ceil(self.min_steps * self.batch_size * self.accumulate / self.max_epochs)


def work(rows: int, gradient: bool, schedule: Schedule) -> float:
    """What a job's training time is proportional to: examples through the model (rows x epochs under
    the size rule) for a gradient regime, rows for one fitted without epochs (tfidf, contrastive)."""
    return float(rows * schedule.epochs(rows)) if gradient else float(rows)


@dataclass(frozen=True)
class Measured:
    """A finished job: its wall time and, of it, training (metrics.json time/train_s: epochs or the fit)."""

    duration_s: float
    train_s: float

    @property
    def overhead_s(self) -> float:
        """What the rows do not scale: model load, tokenizing, validation, test, stack, artifacts."""
        return max(self.duration_s - self.train_s, 0.0)


@dataclass(frozen=True)
class Estimate:
    overhead_s: float
    train_s: float
    basis: str

    @property
    def total_s(self) -> float:
        return self.overhead_s + self.train_s


def scaled(previous: Measured, ratio: float, basis: str) -> Estimate:
    """The same entry's job one rung down, its training scaled by the work ratio."""
    return Estimate(previous.overhead_s, previous.train_s * ratio, basis)


def from_peers(cost: float, peers: Sequence[tuple[float, Measured]], pessimistic: bool) -> Estimate | None:
    """An entry not yet run at any rung, from the jobs of this rung that finished uncut: seconds per unit
    of prior cost (the yaml's `cost`) times this entry's cost; the median rate, or the highest one when
    `pessimistic` (a job that no max_time can stop). None: nothing measured yet."""
    if not peers:
        return None
    rates = [m.duration_s / max(c, 1e-9) for c, m in peers]
    total = (max(rates) if pessimistic else statistics.median(rates)) * cost
    share = statistics.median(m.overhead_s / m.duration_s if m.duration_s > 0 else 1.0 for _, m in peers)
    how = "highest" if pessimistic else "median"
    return Estimate(total * share, total * (1 - share), f"{how} s per unit cost of {len(peers)} job(s) x cost {cost}")


@dataclass(frozen=True)
class Launch:
    max_time_s: int | None  # trainer.max_time for a gradient job; None: nothing can cut it
    expect_cut: bool
    reason: str


@dataclass(frozen=True)
class Skip:
    reason: str


def decide(
    available_s: float, estimate: Estimate | None, gradient: bool, safety: float, min_train_share: float
) -> Launch | Skip:
    """Launch a job, with the trainer.max_time that ends it in `available_s`, or skip it.

    A job fitted without gradient epochs (tfidf, contrastive) cannot be cut: it runs only if its whole
    estimate times (1 + safety) fits. A gradient job keeps its overhead estimate times (1 + safety) for
    the work outside training and trains for the rest (max_time); it is skipped when that rest is below
    min_train_share of its estimated training (a job cut that short ranks nothing). The first job of a
    sweep has no estimate: it runs, a gradient one keeping UNMEASURED_RESERVE of the time left."""
    if available_s <= 0:
        return Skip(f"the budget's share for this rung is spent ({-available_s:.0f} s over)")
    if not gradient:
        if estimate is None:
            return Launch(None, False, "no estimate yet: the first job measures the machine")
        need = estimate.total_s * (1 + safety)
        if need > available_s:
            return Skip(f"estimated {estimate.total_s:.0f} s (+{safety:.0%}: {need:.0f} s), {available_s:.0f} s left")
        return Launch(None, False, f"estimated {estimate.total_s:.0f} s, {available_s:.0f} s left")
    reserve = (estimate.overhead_s if estimate is not None else available_s * UNMEASURED_RESERVE) * (1 + safety)
    window = math.floor(available_s - reserve)
    if window < MIN_TRAIN_S or (estimate is not None and window < min_train_share * estimate.train_s):
        need = f" of the estimated {estimate.train_s:.0f} s" if estimate is not None else ""
        return Skip(f"{max(window, 0)} s of training left{need} after {reserve:.0f} s kept for the rest of the job")
    expect_cut = estimate is None or estimate.train_s * (1 + safety) > window
    if estimate is None:
        why = f"no estimate yet: trains at most {window} s"
    else:
        why = f"estimated {estimate.total_s:.0f} s; trains at most {window} s"
    return Launch(window, expect_cut, why)


def max_time_override(seconds: int) -> str:
    """Lightning's max_time as DD:HH:MM:SS (the form conf/trainer/*.yaml's `+trainer.<kwarg>` takes)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def rung_epochs(schedule: Schedule, rows: int, eta: int, rungs: int) -> list[int | None]:
    """Epoch rungs, for a dataset too small for rung_rows to give more than one rung: every rung trains
    on all the rows, rung k pauses a gradient job after eta^-(rungs-1-k) of its schedule's epochs
    (rounded up to a validation epoch) and the rung above continues that very run (cut.PauseAtEpoch,
    resume=true), so a promoted entry costs only its remaining epochs. None: to the schedule's end.

    A rung is kept when it pauses at most half-way to the rung above it, as in rung_rows: the default
    3-epoch job gets [1, None] (one epoch for every entry, the top third continues for two more)."""
    total, every = schedule.epochs(rows), schedule.validation_every(rows)
    epochs = [total]
    for fraction in reversed(rung_fractions(eta, rungs)[:-1]):
        e = every * max(1, math.ceil(fraction * total / every))
        if 2 * e > epochs[0]:
            break
        epochs.insert(0, e)
    return [*epochs[:-1], None]


def rung_weights(epochs: list[int | None], total: int, eta: int) -> list[float]:
    """Each rung's expected share of the work: eta^-k of the entries x what a job of rung k trains.
    Row rungs (every entry None) cost about the same each (n/eta^k entries x eta^k times the rows); an
    epoch rung's job trains only the epochs between the rung below's pause and its own."""
    if all(e is None for e in epochs):
        return [1.0] * len(epochs)
    ends = [total if e is None else e for e in epochs]
    return [float(eta) ** -k * (end - (ends[k - 1] if k else 0)) for k, end in enumerate(ends)]


def rung_deadlines(budget_s: float, finish_s: float, weights: Sequence[float]) -> list[float]:
    """When each rung must be done, in seconds of the sweep: shares of the budget less what the end
    (report, auto.json) keeps, in proportion to the rungs' expected work (rung_weights), cumulative, so
    what a rung leaves goes to the next."""
    usable, total = max(budget_s - finish_s, 0.0), sum(weights)
    return [usable * sum(weights[: k + 1]) / total for k in range(len(weights))]


def promote(values: Mapping[str, float | None], order: Sequence[str], eta: int, maximize: bool) -> list[str]:
    """The top ceil(n / eta) of the n entries with a value, best first (ties: the cheaper, earlier in
    `order`). Entries skipped or failed have no value and never go on."""
    ranked = ranked_entries(values, order, maximize)
    return ranked[: math.ceil(len(ranked) / eta)] if ranked else []


def ranked_entries(values: Mapping[str, float | None], order: Sequence[str], maximize: bool) -> list[str]:
    """Entries with a value, best first; ties broken by `order` (cheapest first)."""
    scored = {name: v for name in order if (v := _number(values.get(name))) is not None}
    return sorted(scored, key=lambda n: (-scored[n] if maximize else scored[n], order.index(n)))


def _number(value: float | None) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) else value
