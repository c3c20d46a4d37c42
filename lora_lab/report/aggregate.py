"""Statistics over finished jobs: seeds grouped into configs, winners picked, regimes compared, the Pareto front.

Selection uses validation accuracy, never test accuracy: picking the winner on the test set
would make its test score an optimistic estimate. Comparisons then report test accuracy.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy.stats import ttest_ind

from lora_lab.report.collect import JobRow

SELECTION_METRIC = "val/acc_best"
REPORTED_METRIC = "test/acc"
# Welch's t-test above this p-value cannot tell two regimes apart.
P_THRESHOLD = 0.05
NOISE_RULE = (
    "Two regimes are within noise of each other when both have n >= 2 seeds and either the difference "
    "of their mean test accuracies is at most the larger of their standard deviations, or Welch's "
    f"t-test (unequal variances) gives p > {P_THRESHOLD}. With a single seed on either side the "
    "report cannot tell."
)
# The bag-of-words baseline every configuration should beat (conf/regime/tfidf.yaml).
BASELINE_REGIME = "tfidf"
BASELINE_RULE = (
    '"beats TF-IDF?" compares each configuration with the bag-of-words baseline (regime=tfidf: TF-IDF n-grams + '
    "logistic regression) on the same dataset, by the noise rule: yes when its mean test accuracy is higher and the "
    "two are apart, no when lower and apart, within noise otherwise; with a single seed on either side the report "
    "cannot tell. In brackets: its mean test accuracy minus the baseline's. The baseline ignores the backbone, so "
    "it is matched by dataset alone; where several tfidf configurations ran on a dataset, the best by mean "
    "validation accuracy is the baseline. A configuration that does not beat it (no, within noise) is not yet "
    "worth its compute."
)
SELECTION_RULE = (
    f"★ marks the best configuration per (dataset, backbone): the highest mean {SELECTION_METRIC} over its "
    "seeds (ties: fewer trainable parameters), chosen on validation so that its test accuracy stays an "
    "unbiased estimate; in the jobs table, ★ marks that configuration's best seed by the same rule."
)


@dataclass
class ConfigGroup:
    """The finished jobs of one effective config that differ only by seed."""

    jobs: list[JobRow]

    @property
    def first(self) -> JobRow:
        return self.jobs[0]

    @property
    def n(self) -> int:
        return len(self.jobs)

    def values(self, key: str) -> list[float]:
        return [v for job in self.jobs if (v := job.metric(key)) is not None]

    def mean(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.fmean(values) if values else None

    def std(self, key: str) -> float | None:
        """Sample standard deviation (n - 1), as Welch's test uses; None below two seeds."""
        values = self.values(key)
        return statistics.stdev(values) if len(values) >= 2 else None

    def summary(self, key: str, digits: int = 3) -> str:
        """`0.812 ± 0.021 (3)`: mean ± sample std (n seeds); a single seed shows its value and (1)."""
        mean, std = self.mean(key), self.std(key)
        if mean is None:
            return "-"
        spread = f" ± {std:.{digits}f}" if std is not None else ""
        return f"{mean:.{digits}f}{spread} ({len(self.values(key))})"

    @property
    def label(self) -> str:
        """What names the config in a sweep: regime, its rank where it uses one, and its other varied overrides."""
        job = self.first
        parts = [str(job.regime), f"r={job.rank}" if job.rank is not None else "", job.variant]
        return " ".join(p for p in parts if p)


@dataclass
class Comparison:
    """One regime's best config against the leading regime's, on test accuracy."""

    leader: ConfigGroup
    other: ConfigGroup
    difference: float
    larger_std: float | None
    p_value: float | None
    verdict: str


def config_groups(jobs: Iterable[JobRow]) -> list[ConfigGroup]:
    """Finished jobs grouped by their seedless config, in the order the sweep ran them."""
    groups: dict[str, ConfigGroup] = {}
    for job in jobs:
        if job.finished and job.group_key is not None:
            groups.setdefault(job.group_key, ConfigGroup([])).jobs.append(job)
    return list(groups.values())


def best_job(group: ConfigGroup) -> JobRow:
    """The best seed of a config, by the same rule: the job the report marks and shows the confusion matrix of."""
    return max(group.jobs, key=_job_rank)


def best_groups(groups: Iterable[ConfigGroup]) -> dict[tuple[str, str], ConfigGroup]:
    """The best config per (dataset, backbone), by mean validation accuracy over its seeds."""
    best: dict[tuple[str, str], ConfigGroup] = {}
    for group in groups:
        key = group.first.scope
        if key not in best or _group_rank(group) > _group_rank(best[key]):
            best[key] = group
    return best


def ranked(groups: Iterable[ConfigGroup]) -> list[ConfigGroup]:
    """Configs best first, by the selection rule (mean validation accuracy, then fewer parameters)."""
    return sorted(groups, key=_group_rank, reverse=True)


def compare_regimes(groups: Sequence[ConfigGroup]) -> list[Comparison]:
    """Per (dataset, backbone): every other regime's best config against the leading regime's best."""
    per_regime: dict[tuple[str, str], dict[str, ConfigGroup]] = {}
    for group in groups:
        regimes = per_regime.setdefault(group.first.scope, {})
        regime = str(group.first.regime)
        if regime not in regimes or _group_rank(group) > _group_rank(regimes[regime]):
            regimes[regime] = group
    comparisons = []
    for regimes in per_regime.values():
        leader = max(regimes.values(), key=_group_rank)
        comparisons += [compare(leader, other) for other in regimes.values() if other is not leader]
    return comparisons


def compare(leader: ConfigGroup, other: ConfigGroup) -> Comparison:
    """Apply NOISE_RULE to two configs' test accuracies."""
    a, b = leader.values(REPORTED_METRIC), other.values(REPORTED_METRIC)
    difference = statistics.fmean(a) - statistics.fmean(b)
    if min(len(a), len(b)) < 2:
        return Comparison(leader, other, difference, None, None, "cannot tell (single seed)")
    larger_std = max(statistics.stdev(a), statistics.stdev(b))
    # Both spreads zero (every seed scored the same): the t statistic is undefined; the std rule decides.
    with warnings.catch_warnings():
        # scipy warns of "precision loss" when one side's seeds all scored the same; its variance is then exactly 0.
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(ttest_ind(a, b, equal_var=False).pvalue) if larger_std > 0 else None
    within = abs(difference) <= larger_std or (p_value is not None and p_value > P_THRESHOLD)
    return Comparison(leader, other, difference, larger_std, p_value, "within noise" if within else "apart")


def baselines(groups: Iterable[ConfigGroup]) -> dict[str, ConfigGroup]:
    """The tfidf configuration per dataset, the best by the selection rule where several ran."""
    best: dict[str, ConfigGroup] = {}
    for group in groups:
        dataset = str(group.first.dataset)
        if group.first.regime == BASELINE_REGIME and (
            dataset not in best or _group_rank(group) > _group_rank(best[dataset])
        ):
            best[dataset] = group
    return best


def beats_baseline(group: ConfigGroup, baseline: ConfigGroup | None) -> str | None:
    """BASELINE_RULE's answer for one configuration: yes | within noise | no | cannot tell, single seed,
    with the difference in brackets; "baseline" for the baseline itself; None without a baseline."""
    if baseline is None:
        return None
    if group is baseline:
        return "baseline"
    c = compare(group, baseline)  # difference: this configuration minus the baseline
    if c.larger_std is None:
        verdict = "cannot tell, single seed"
    else:
        verdict = "within noise" if c.verdict == "within noise" else "yes" if c.difference > 0 else "no"
    return f"{verdict} ({c.difference:+.4f})"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, score) points no other point beats (cost <= and score >=, one strictly),
    by ascending cost: the line the accuracy-against-parameters plot draws."""
    return sorted(non_dominated(points, (False, True)), key=lambda i: (points[i][0], -points[i][1]))


def non_dominated(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """Indices of the points no other point dominates (as good on all objectives, better on one)."""

    def better_or_equal(a: float, b: float, up: bool) -> bool:
        return a >= b if up else a <= b

    def dominates(p: Sequence[float], q: Sequence[float]) -> bool:
        return all(better_or_equal(a, b, up) for a, b, up in zip(p, q, maximize)) and any(a != b for a, b in zip(p, q))

    return [i for i, q in enumerate(points) if not any(dominates(p, q) for j, p in enumerate(points) if j != i)]


def knee(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> int | None:
    """Index (into points) of the point closest to the ideal after scaling each objective to [0, 1]."""
    if not points:
        return None
    scaled = []
    for k, up in enumerate(maximize):
        column = [p[k] for p in points]
        best, worst = (max(column), min(column)) if up else (min(column), max(column))
        span = abs(worst - best)
        scaled.append([abs(v - best) / span if span else 0.0 for v in column])
    distances = [math.hypot(*(scaled[k][i] for k in range(len(maximize)))) for i in range(len(points))]
    return min(range(len(points)), key=distances.__getitem__)


def _job_rank(job: JobRow) -> tuple[float, float]:
    return _rank(job.metric(SELECTION_METRIC), job.metric("params/trainable"))


def _group_rank(group: ConfigGroup) -> tuple[float, float]:
    return _rank(group.mean(SELECTION_METRIC), group.mean("params/trainable"))


def _rank(selection: float | None, params: float | None) -> tuple[float, float]:
    """Higher is better: the selection metric first, then fewer parameters (missing values rank last)."""
    return (-math.inf if selection is None else selection, -math.inf if params is None else -params)
