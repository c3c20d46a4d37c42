"""Promotion: pick= chooses the job of a sweep dir to serve or export (lora_lab/job/pick.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_lab.errors import ConfigError
from lora_lab.job.dir import PAUSED_KEY, JobDir
from lora_lab.job.pick import parse_pick, pick_job, promote

ROOT = Path(__file__).resolve().parents[2]


def sweep(root: Path, jobs: dict[str, tuple[str, dict]], study: dict | None = None) -> Path:
    """A sweep dir of fake finished jobs: name -> (status, metrics)."""
    for name, (state, metrics) in jobs.items():
        job = JobDir(root / name)
        job.path.mkdir(parents=True)
        job.write_status({"state": state})
        job.write_metrics(metrics)
    if study is not None:
        (root / "study.json").write_text(json.dumps(study))
    return root


@pytest.fixture
def front(tmp_path: Path) -> Path:
    return sweep(
        tmp_path / "sweep",
        {
            "0": ("complete", {"val/f1_macro": 0.80, "latency/p50_ms": 1.0, "artifact/adapter_bytes": 10}),
            "1": ("complete", {"val/f1_macro": 0.90, "latency/p50_ms": 9.0, "artifact/adapter_bytes": 900}),
            "2": ("complete", {"val/f1_macro": 0.86, "latency/p50_ms": 4.0, "artifact/adapter_bytes": 300}),
            "3": ("pruned", {"val/f1_macro": 0.95, "latency/p50_ms": 2.0, "artifact/adapter_bytes": 10}),
            "4": ("failed", {"val/f1_macro": 0.99, "latency/p50_ms": 0.5, "artifact/adapter_bytes": 10}),
        },
        {"optimized_metric": "val/f1_macro", "direction": "maximize"},
    )


def test_best_ranks_complete_jobs_by_the_sweeps_own_metric(front: Path):
    pick = pick_job(front, "best")
    assert pick.job_dir == front / "1" and pick.trial == 1  # 3 (pruned) and 4 (failed) are not candidates
    assert (pick.candidates, pick.eligible) == (3, 3)
    assert "trial 1" in pick.describe("best") and "val/f1_macro 0.9" in pick.describe("best")


def test_constraints_keep_the_jobs_that_meet_all_of_them_then_rank(front: Path):
    assert pick_job(front, "latency/p50_ms<=5").job_dir == front / "2"
    pick = pick_job(front, "latency/p50_ms<5 & artifact/adapter_bytes<100")
    assert pick.job_dir == front / "0" and pick.eligible == 1
    assert pick.figures == {"val/f1_macro": 0.80, "latency/p50_ms": 1.0, "artifact/adapter_bytes": 10}


def test_a_minimised_metric_ranks_lowest_first(tmp_path: Path):
    root = sweep(
        tmp_path / "s",
        {"0": ("complete", {"val/loss": 0.3}), "1": ("complete", {"val/loss": 0.2})},
        {"optimized_metric": "val/loss", "direction": "minimize"},
    )
    assert pick_job(root).job_dir == root / "1"


def test_without_study_json_best_is_the_highest_val_acc_best(tmp_path: Path):
    root = sweep(
        tmp_path / "grid", {"a": ("complete", {"val/acc_best": 0.7}), "b": ("complete", {"val/acc_best": 0.6})}
    )
    pick = pick_job(root)
    assert pick.job_dir == root / "a" and pick.trial is None and pick.rank_metric == "val/acc_best"


def test_a_job_the_auto_search_paused_is_not_a_candidate_the_one_that_continued_it_is(tmp_path: Path):
    # An auto search screens a small dataset on epochs: r0 jobs pause after one epoch, the promoted one
    # continues. When the continued run's best epoch is still its first, both score the same, and the
    # paused job (first in dir order) would win the tie; it is a screening point, not a model to ship.
    root = sweep(
        tmp_path / "auto",
        {
            "r0_full": ("complete", {"val/acc_best": 0.95, PAUSED_KEY: 1}),
            "r0_lora_r8": ("complete", {"val/acc_best": 0.91, PAUSED_KEY: 1}),
            "r1_full": ("complete", {"val/acc_best": 0.95}),
        },
    )
    pick = pick_job(root)
    assert pick.job_dir == root / "r1_full" and pick.candidates == 1


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("fastest", r"'fastest' is not a constraint; use pick=best, or pick=\"<metric><=\|>=\|<\|><number>\""),
        ("latency/p50_ms=<5", "is not a constraint"),
        (
            "latency/p99_ms<=5",
            r"no job of .* has a metric 'latency/p99_ms'; known: artifact/adapter_bytes, latency/p50_ms",
        ),
        ("latency/p50_ms<=0.5", r"none of the 3 complete jobs .* meets it \(latency/p50_ms<=0.5: the lowest is 1\)"),
        ("val/f1_macro>=0.99", r"meets it \(val/f1_macro>=0.99: the highest is 0.9\)"),
    ],
)
def test_a_pick_that_cannot_be_met_names_the_problem(front: Path, rule: str, message: str):
    with pytest.raises(ConfigError, match=message):
        pick_job(front, rule)


def test_promote_passes_a_job_dir_through_and_refuses_a_constraint_on_it(front: Path):
    assert promote(front / "1") == (front / "1", None)
    with pytest.raises(ConfigError, match="is not a sweep dir; drop pick="):
        promote(front / "1", "latency/p50_ms<=5")
    assert parse_pick(" best ") == []


def test_the_export_command_takes_an_unquoted_constraint_and_fails_in_one_line(front: Path, tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lora_lab.export",
            f"run_dir={front}",
            "pick=latency/p50_ms<=0.1",
            f"out={tmp_path / 'x'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: pick=latency/p50_ms<=0.1: none of the 3 complete jobs of {front} meets it "
        "(latency/p50_ms<=0.1: the lowest is 1)"
    ]
    assert not (tmp_path / "x").exists()


def test_the_server_serves_the_picked_job_of_each_sweep_and_logs_why(front: Path, caplog):
    from omegaconf import OmegaConf

    from lora_lab.serve.__main__ import promote_sweeps

    cfg = OmegaConf.create({"adapters": {"fpb": str(front), "one": str(front / "0")}, "pick": "latency/p50_ms<=5"})
    with caplog.at_level("INFO", logger="lora_lab.serve.__main__"):
        promote_sweeps(cfg)
    assert cfg.adapters == {"fpb": str(front / "2"), "one": str(front / "0")}  # a job dir is served as given
    assert "adapters.fpb: pick=latency/p50_ms<=5: trial 2" in caplog.text
    with pytest.raises(ConfigError, match="is not a sweep dir"):
        promote_sweeps(OmegaConf.create({"adapters": {"one": str(front / "0")}, "pick": "latency/p50_ms<=5"}))
