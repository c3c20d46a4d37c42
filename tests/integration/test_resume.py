"""Kill a job with SIGKILL mid-epoch, start it again with resume=true: it ends with the same test
metrics and the same adapter, head and merged bytes as an uninterrupted run of the same seed (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from lora_lab.artifacts import read_json

# tiny_bert on the 1,400 synthetic training rows: 88 batches of 16 an epoch, a full checkpoint every 5.
JOB = [
    "backbone=tiny_bert",
    "stack=none",  # the TF-IDF stack has its own tests (tests/unit/test_stack.py)
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "data.batch_size=16",
    "callbacks.resume_checkpoint.every_n_train_steps=5",
]
BATCHES_PER_EPOCH = 88


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lora_lab.train", *args], capture_output=True, text=True, timeout=600)


def _kill_after_first_checkpoint(run_dir: Path) -> tuple[dict, dict]:
    """Start the job, SIGKILL it once checkpoints/last.ckpt exists; the checkpoint's resume state
    and its time and example counts."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lora_lab.train", *JOB, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    checkpoint = torch.load(last, weights_only=False)

    def state(name: str) -> dict:
        return next(state for key, state in checkpoint["callbacks"].items() if name in key)

    return state("ResumeState"), state("ResourceMonitor")


def test_a_job_killed_mid_epoch_resumes_to_the_same_metrics_and_bytes(tmp_path: Path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _train(*JOB, f"hydra.run.dir={whole}").returncode == 0

    state, counted = _kill_after_first_checkpoint(killed)
    assert state["epoch"] == 0 and 0 < state["batches"] < BATCHES_PER_EPOCH  # killed inside the first epoch
    assert read_json(killed / "status.json")["state"] == "running" and not (killed / "metrics.json").exists()

    refused = _train(*JOB, f"hydra.run.dir={killed}")  # without resume=true: never overwritten
    assert refused.returncode == 1 and "Add resume=true to continue it" in refused.stderr
    other = _train(*JOB, "rank=16", "resume=true", f"hydra.run.dir={killed}")
    assert other.returncode == 2 and "was started with another config" in other.stderr

    resumed = _train(*JOB, "resume=true", f"hydra.run.dir={killed}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "continuing from" in (killed / "train.log").read_text()
    a, b = read_json(whole / "metrics.json"), read_json(killed / "metrics.json")
    assert {k: v for k, v in a.items() if k.startswith("test/")} == {
        k: v for k, v in b.items() if k.startswith("test/")
    }
    # The resumed run trained only what the killed one had not (the rest of epoch 0, and epoch 1), and
    # reports the whole job: the killed run's examples and seconds up to its checkpoint, plus its own.
    assert counted["examples"] == 16 * state["batches"] and counted["train_s"] > 0
    assert b["train/examples_seen"] == a["train/examples_seen"]
    assert b["time/train_s"] > counted["train_s"] and b["time/val_s"] > counted["val_s"]  # it validated both epochs
    for artifact in ("adapter/adapter_model.safetensors", "adapter/head.safetensors", "merged/model.safetensors"):
        assert (whole / artifact).read_bytes() == (killed / artifact).read_bytes(), artifact

    again = _train(*JOB, "resume=true", f"hydra.run.dir={killed}")  # finished: a clear no-op
    assert again.returncode == 0 and "already finished" in again.stdout
    assert read_json(killed / "metrics.json") == b


def test_two_runs_of_one_config_and_seed_give_identical_metrics_and_files(tmp_path: Path):
    for name in ("one", "two"):
        assert _train(*JOB, f"hydra.run.dir={tmp_path / name}").returncode == 0
    one, two = read_json(tmp_path / "one" / "metrics.json"), read_json(tmp_path / "two" / "metrics.json")
    assert {k: v for k, v in one.items() if not k.startswith(("time/", "throughput/", "latency/", "memory/"))} == {
        k: v for k, v in two.items() if not k.startswith(("time/", "throughput/", "latency/", "memory/"))
    }
    for artifact in ("adapter/adapter_model.safetensors", "adapter/head.safetensors", "merged/model.safetensors"):
        assert (tmp_path / "one" / artifact).read_bytes() == (tmp_path / "two" / artifact).read_bytes(), artifact


def test_resume_on_a_dir_without_a_job_is_refused(tmp_path: Path):
    out = _train(*JOB, "resume=true", f"hydra.run.dir={tmp_path / 'nothing'}")
    assert out.returncode == 2 and "holds no job to resume" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "nothing").exists()
