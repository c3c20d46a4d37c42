"""A job whose stdout is closed (a killed `| tee`, a parent that died) still writes its outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lora_lab.artifacts import read_json

JOB = [
    "backbone=tiny_bert",
    "stack=none",
    "dataset.n_per_class=20",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
]


@pytest.mark.slow
def test_a_job_with_a_closed_stdout_finishes_and_writes_its_files(tmp_path: Path):
    job = tmp_path / "job"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lora_lab.train", *JOB, f"hydra.run.dir={job}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    proc.stdout.close()  # every later write to stdout is a broken pipe
    assert proc.wait(timeout=600) == 0
    assert read_json(job / "status.json")["state"] == "complete"
    assert "test/acc" in read_json(job / "metrics.json") and (job / "merged").is_dir()
