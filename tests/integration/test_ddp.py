"""trainer=ddp_cpu end to end: two real processes (gloo), started by Lightning re-running the command.

A subprocess, not train() in pytest: Lightning starts rank 1 by re-executing sys.argv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lora_lab.artifacts import read_json

# tiny_bert on 20 synthetic notes per intent: 70 training rows, exactly 10 batches of 7 (5 per rank),
# 15 validation and 15 test rows (8 on rank 0, 7 on rank 1); two epochs, about 20 s.
JOB = [
    "trainer=ddp_cpu",
    "backbone=tiny_bert",
    "stack=none",  # the TF-IDF stack has its own tests (tests/unit/test_stack.py)
    "dataset=b2b_sales_notes",
    "dataset.n_per_class=20",
    "data.batch_size=7",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


@pytest.mark.slow
def test_a_ddp_job_trains_on_two_ranks_and_rank_0_alone_writes_one_job_dir(tmp_path: Path):
    # Run from tmp_path: a rank writing anywhere but the job dir (Hydra's default outputs/<date>/<time>,
    # relative to the working dir) would leave a stray dir here.
    out = subprocess.run(
        [sys.executable, "-m", "lora_lab.train", *JOB, f"hydra.run.dir={tmp_path / 'job'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job"]

    job = tmp_path / "job"
    metrics = read_json(job / "metrics.json")
    assert read_json(job / "status.json")["state"] == "complete"
    assert metrics["world_size"] == 2
    # Every test row scored exactly once over the two ranks (no DistributedSampler padding repeats).
    assert sum(map(sum, metrics["test/confusion_matrix"])) == metrics["data/test_rows"] == 15
    # The two ranks trained disjoint halves that together are every training row of each epoch.
    assert metrics["train/examples_seen"] == 2 * metrics["data/train_rows"] == 140
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (job / "train_ddp_process_1.log").read_text()
    # Rank 1 wrote its own log and nothing else: no second .hydra/, status or metrics of its own.
    assert sorted(p.name for p in job.iterdir()) == [
        ".hydra",
        "adapter",
        "confusion_matrix.png",
        "labels.json",
        "merged",
        "metrics.json",
        "provenance.json",
        "status.json",
        "test_sample.json",
        "train.log",
        "train_ddp_process_1.log",
    ]
    assert sorted(p.name for p in (job / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    assert "test accuracy" in out.stdout and out.stdout.count("test accuracy") == 1  # one result table: rank 0's
