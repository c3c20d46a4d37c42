"""The design card's multirun, end to end as a user runs it (subprocess, real Hydra launcher)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lora_lab.artifacts import read_json

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["stack=none", "dataset.n_per_class=20", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lora_lab.train", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


def test_design_card_multirun_trains_each_distinct_job_once(tmp_path: Path):
    sweep = tmp_path / "sweep"
    proc = _run(
        "-m",
        "regime=lora,full",
        "rank=8,16",
        *SMALL,
        "trainer.limit_train_batches=0.5",
        "logger=wandb",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {int(p.name): p for p in sweep.iterdir() if p.name.isdigit()}
    assert sorted(jobs) == [0, 1, 2, 3]
    overrides = {n: (p / ".hydra" / "overrides.yaml").read_text() for n, p in jobs.items()}
    assert "regime=lora" in overrides[0] and "rank=8" in overrides[0]
    assert "regime=full" in overrides[3] and "rank=16" in overrides[3]
    states = {n: read_json(p / "status.json")["state"] for n, p in jobs.items()}
    # full ignores rank, so full x rank 16 repeats full x rank 8 (job 2): recorded, not trained.
    assert states == {0: "complete", 1: "complete", 2: "complete", 3: "duplicate"}
    assert read_json(jobs[3] / "status.json")["duplicate_of"] == str(jobs[2])
    assert not (jobs[3] / "metrics.json").exists()
    for n in (0, 1):
        assert (jobs[n] / "adapter" / "adapter_model.safetensors").is_file()
    ranks = [read_json(jobs[n] / "adapter" / "adapter_config.json")["r"] for n in (0, 1)]
    assert ranks == [8, 16]
    assert (
        read_json(jobs[1] / "metrics.json")["params/trainable"]
        > read_json(jobs[0] / "metrics.json")["params/trainable"]
    )
    assert (jobs[2] / "merged" / "model.safetensors").is_file() and not (jobs[2] / "adapter").exists()
    # Trainer kwargs are plain overrides: half of the 3 training batches per epoch ran.
    assert read_json(jobs[0] / "metrics.json")["train/examples_seen"] < 70
    # Each trained job logged one offline W&B run (their shared group: test_config.py); the duplicate none.
    assert [len(list((jobs[n] / "wandb").glob("offline-run-*"))) for n in (0, 1, 2)] == [1, 1, 1]
    assert not (jobs[3] / "wandb").exists()
    # Each job's provenance.json holds its own combination and the command that ran the sweep.
    provenance = read_json(jobs[1] / "provenance.json")
    assert "regime=lora" in provenance["overrides"] and "rank=16" in provenance["overrides"]
    assert provenance["command"][1:4] == ["-m", "lora_lab.train", "-m"] and "regime=lora,full" in provenance["command"]

    # Running into the same sweep dir again is refused before anything is overwritten.
    before = (jobs[0] / ".hydra" / "config.yaml").read_text()
    again = _run("-m", "regime=lora", *SMALL, f"hydra.sweep.dir={sweep}")
    assert again.returncode != 0 and "earlier multirun" in again.stderr
    assert (jobs[0] / ".hydra" / "config.yaml").read_text() == before
