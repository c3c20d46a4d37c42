"""The report's intervals and paired test on known numbers (lora_lab/report/significance.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lora_lab.job.dir import JobDir
from lora_lab.report.aggregate import ConfigGroup
from lora_lab.report.collect import JobRow
from lora_lab.report.significance import (
    compare_on_rows,
    paired_bootstrap,
    row_correctness,
    row_interval,
    t_half_width,
)


def test_the_seed_interval_is_students_t():
    # 3 seeds, mean 0.80, sample std 0.01: t(0.975, 2) = 4.303, so 4.303 * 0.01 / sqrt(3) = 0.02484
    assert t_half_width([0.79, 0.80, 0.81]) == pytest.approx(0.024841, abs=1e-6)
    assert t_half_width([0.8]) is None


def test_the_paired_bootstrap_matches_an_independent_resampling():
    rng = np.random.default_rng(7)
    a = (rng.random(339) < 0.90).astype(float)
    b = np.where(rng.random(339) < 0.9, a, 1 - a)  # b copies a on 90% of rows: correlated errors
    test = paired_bootstrap(a, b)
    # An independent percentile bootstrap of the same rows (another generator, same count)
    other = np.random.default_rng(123)
    means = [(a - b)[other.integers(0, 339, 339)].mean() for _ in range(10_000)]
    low, high = np.percentile(means, [2.5, 97.5])
    assert test.difference == pytest.approx((a - b).mean())
    assert test.low == pytest.approx(low, abs=0.004) and test.high == pytest.approx(high, abs=0.004)
    assert test.rows == 339


@pytest.mark.parametrize(
    ("a_right", "b_right", "verdict"),
    [(300, 250, "beats"), (250, 300, "loses to"), (280, 279, "within noise of")],
)
def test_the_verdict_follows_the_interval(a_right: int, b_right: int, verdict: str):
    a = np.array([1.0] * a_right + [0.0] * (339 - a_right))
    b = np.array([1.0] * b_right + [0.0] * (339 - b_right))
    assert paired_bootstrap(a, b).verdict == verdict


def _group(root: Path, name: str, answers: list[list[int]]) -> ConfigGroup:
    jobs = []
    for seed, predicted in enumerate(answers):
        job = JobDir(root / f"{name}{seed}")
        job.path.mkdir(parents=True)
        job.write_test_predictions([0, 1, 1, 0], predicted)
        jobs.append(JobRow(name=job.path.name, path=job.path, state="complete", seed=seed))
    return ConfigGroup(jobs)


def test_seeds_are_averaged_per_row_before_pairing(tmp_path: Path):
    a = _group(tmp_path, "a", [[0, 1, 1, 0], [0, 1, 0, 0]])  # rows right: 4, then 3
    b = _group(tmp_path, "b", [[1, 1, 1, 1]])
    assert row_correctness(a).tolist() == [1.0, 1.0, 0.5, 1.0]
    assert compare_on_rows(a, b).difference == pytest.approx((3.5 - 2) / 4)
    (tmp_path / "b0" / "test_predictions.json").unlink()
    assert compare_on_rows(a, b) is None  # a job without predictions: nothing to pair


def test_the_row_interval_is_the_binomial_noise_of_the_test_rows(tmp_path: Path):
    """Seeds that agree leave only the rows' noise: the bootstrap interval then matches
    p +- 1.96 sqrt(p (1 - p) / n), 0.9 +- 0.032 on 339 rows, while the seeds' t interval is 0."""
    right = [1] * 305 + [0] * 34  # 305 / 339 = 0.8997
    truth = [1] * 339
    jobs = []
    for seed in range(3):
        job = JobDir(tmp_path / f"s{seed}")
        job.path.mkdir()
        job.write_test_predictions(truth, right)
        jobs.append(
            JobRow(name=job.path.name, path=job.path, state="complete", seed=seed, metrics={"test/acc": 305 / 339})
        )
    group = ConfigGroup(jobs)
    low, high = row_interval(group)
    p = 305 / 339
    half = 1.96 * (p * (1 - p) / 339) ** 0.5
    assert (high - low) / 2 == pytest.approx(half, rel=0.1) and low < p < high
    assert t_half_width(group.values("test/acc")) == 0.0
    (tmp_path / "s1" / "test_predictions.json").unlink()
    assert row_interval(group) is None
