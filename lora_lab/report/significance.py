"""Is the winner better, or lucky? 95% intervals over seeds, and a paired test on the same test rows.

Two sources of noise move a test accuracy: the seed (initialisation, data order) and the test rows
themselves (another 339 sentences would score differently). The seed interval is Student's t over
a configuration's seeds: mean ± t(0.975, n - 1) * s / sqrt(n). The comparison of two configurations
is a paired bootstrap over the test rows, which both were scored on (test_predictions.json): each
row's correctness averaged over a configuration's seeds, the per-row difference of the two,
resampled with replacement BOOTSTRAP_SAMPLES times. The 2.5th and 97.5th percentiles of the mean
difference bound it; "A beats B" when that interval lies above 0, "within noise" when it holds 0.
Pairing matters: on the same rows, two models' errors are correlated (both miss the hard rows),
so the paired interval is much narrower than two separate ones would suggest. Beside the seed
interval, each configuration also gets the rows' own: its seed-averaged row correctness,
bootstrapped the same way. With one seed, or seeds that agree, it is the only noise left: about
1.96 * sqrt(p (1 - p) / rows), 3.2 points at p = 0.9 on 339 rows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from lora_lab.job.dir import JobDir
from lora_lab.report.aggregate import ConfigGroup

BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0  # the same report twice gives the same interval


def t_half_width(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half the width of the t interval of the mean of `values`; None below two values."""
    if len(values) < 2:
        return None
    return float(
        student_t.ppf((1 + confidence) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    )


def row_correctness(group: ConfigGroup) -> np.ndarray | None:
    """(rows,) the share of the group's seeds that answered each test row right; None when a job did
    not record its predictions or the seeds disagree on the number of rows."""
    rows = [JobDir(job.path).test_correct() for job in group.jobs]
    if not rows or any(r is None for r in rows) or len({len(r) for r in rows}) != 1:
        return None
    return np.mean(np.array(rows, dtype=float), axis=0)


@dataclass
class PairedTest:
    difference: float  # mean test accuracy of a minus b, on the shared rows
    low: float
    high: float
    rows: int

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "beats"
        return "loses to" if self.high < 0 else "within noise of"


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = BOOTSTRAP_SAMPLES) -> PairedTest:
    """The 95% percentile interval of mean(a - b) over rows resampled with replacement."""
    diff = a - b
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedTest(float(diff.mean()), float(low), float(high), len(diff))


def row_interval(group: ConfigGroup, samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float] | None:
    """The 95% percentile interval of the group's test accuracy over its test rows resampled with
    replacement (each row's correctness averaged over the seeds); None without predictions."""
    rows = row_correctness(group)
    if rows is None or not len(rows):
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = rows[rng.integers(0, len(rows), size=(samples, len(rows)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def compare_on_rows(winner: ConfigGroup, runner_up: ConfigGroup) -> PairedTest | None:
    """The paired bootstrap of two configurations on their shared test rows; None without predictions."""
    a, b = row_correctness(winner), row_correctness(runner_up)
    if a is None or b is None or len(a) != len(b):
        return None
    return paired_bootstrap(a, b)
