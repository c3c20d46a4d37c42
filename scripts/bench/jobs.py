"""Launching benchmark runs as subprocesses and recording each one's raw result as it finishes.

Layout of a results dir (default bench_results/<timestamp>/):
    machine.json            CPU facts and peak FLOP/s
    rows.json               lora_lab's train and test rows, read by the recipe and inference workers
    runs/<name>/            the run's own dir (a worker's spec/result, or the lora_lab job dir)
    runs/<name>.log         its stdout + stderr
    runs/<name>.json        the normalized record, written when the run ends: a partial
                            benchmark keeps every finished run
    summary.json            the figures of the final JSON line
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.lab import REPO
from bench.worker import read_result, write_spec

SCRIPTS_DIR = REPO / "scripts"
# The metrics.json keys the benchmark reads from a lora_lab job, and those only gradient training writes.
LORA_LAB_KEYS = (
    "test/acc",
    "test/f1_macro",
    "val/acc_best",
    "time/train_s",
    "throughput/train_examples_per_s",
    "memory/peak_rss_mb",
    "params/trainable",
    "data/train_rows",
    "data/test_rows",
)
GRADIENT_KEYS = ("train/examples_seen", "epochs")
LOG_TAIL_LINES = 30


class RunError(RuntimeError):
    """A benchmark subprocess failed; the message names its log and shows the log's tail."""


def subprocess_env() -> dict[str, str]:
    """The caller's environment, with scripts/ importable (bench.*) and the hub switched off."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SCRIPTS_DIR), env.get("PYTHONPATH")) if p)
    env["HF_HUB_OFFLINE"] = "1"  # nothing downloads at run time: the backbone is embedded
    env.setdefault("WANDB_MODE", "offline")
    env.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    return env


class Runs:
    """Runs benchmark jobs one after another under `results_dir/runs/`, numbered in order."""

    def __init__(self, results_dir: Path):
        self.results_dir = results_dir
        self.runs_dir = results_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.env = subprocess_env()

    def _name(self, label: str) -> str:
        self.count += 1
        return f"{self.count:02d}_{label}"

    def _execute(self, name: str, cmd: list[str]) -> float:
        """Run cmd with output to runs/<name>.log; its wall seconds, or RunError with the log's tail."""
        log_path = self.runs_dir / f"{name}.log"
        print(f"[bench] {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        with open(log_path, "w") as log:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO).returncode
        wall_s = time.perf_counter() - start
        if code != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            raise RunError(f"run {name} failed (exit {code}) after {wall_s:.0f} s; full log: {log_path}\n{tail}")
        return wall_s

    def _record(self, name: str, record: dict) -> dict:
        record = {"name": name, **record}
        (self.runs_dir / f"{name}.json").write_text(json.dumps(record, indent=2))
        shown = {
            k: record[k]
            for k in ("test_acc", "examples_per_s", "batch_examples_per_s", "latency_p50_ms")
            if k in record
        }
        print(
            f"[bench] {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in {**shown, "wall_s": record["wall_s"]}.items()),
            flush=True,
        )
        return record

    def worker(self, label: str, module: str, spec: dict, **tags: object) -> dict:
        """Run `python -m bench.<module> <run_dir>` with spec.json; its result plus wall_s and tags."""
        name = self._name(label)
        run_dir = self.runs_dir / name
        write_spec(run_dir, spec)
        wall_s = self._execute(name, [sys.executable, "-m", f"bench.{module}", str(run_dir)])
        return self._record(name, {**tags, **read_result(run_dir), "wall_s": wall_s, "run_dir": str(run_dir)})

    def lora_lab(self, label: str, overrides: list[str], gradient: bool = True, **tags: object) -> dict:
        """Run `python -m lora_lab.train <overrides>` in its own dir; the figures of its metrics.json.

        gradient=True (a regime trained by gradient epochs): its training tokens are counted too.
        """
        name = self._name(label)
        run_dir = self.runs_dir / name
        tokens_path = self.runs_dir / f"{name}.tokens.json" if gradient else None
        cmd = [
            sys.executable,
            "-m",
            "lora_lab.train",
            *overrides,
            "logger=csv",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run_dir}",
        ]
        if tokens_path is not None:
            cmd += [
                "+callbacks.bench_tokens._target_=bench.token_counter.TokenCounter",
                f"+callbacks.bench_tokens.out_path={tokens_path}",
            ]
        wall_s = self._execute(name, cmd)
        return self._record(
            name, {**tags, **lora_lab_figures(run_dir, tokens_path), "wall_s": wall_s, "run_dir": str(run_dir)}
        )

    def lora_lab_multirun(self, label: str, overrides: list[str], **tags: object) -> dict:
        """Run `python -m lora_lab.train -m <overrides>` (Hydra's basic launcher: every job in this
        one process) in its own sweep dir; the process's wall time against its jobs' work.

        work = each job's time/prepare_s (fitting outside epochs) + time/fit_s (training and
        validation epochs) + time/test_s; everything else
        (interpreter start, imports, config composition, model loading, tokenization or the cache
        read, artifact writing) is overhead.
        """
        name = self._name(label)
        sweep_dir = self.runs_dir / name
        cmd = [
            sys.executable,
            "-m",
            "lora_lab.train",
            "-m",
            *overrides,
            "logger=csv",
            "trainer.enable_progress_bar=false",
            f"hydra.sweep.dir={sweep_dir}",
        ]
        wall_s = self._execute(name, cmd)
        return self._record(name, {**tags, **multirun_figures(sweep_dir, wall_s), "run_dir": str(sweep_dir)})


def multirun_figures(sweep_dir: Path, wall_s: float) -> dict:
    """A finished multirun's work (per job: prepare + fit + test seconds) against its wall time."""
    jobs = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))]
    if not jobs:
        raise RunError(f"{sweep_dir}: the multirun finished no job (no */metrics.json)")
    work_s = [m.get("time/prepare_s", 0.0) + m.get("time/fit_s", 0.0) + m["time/test_s"] for m in jobs]
    return {
        "jobs": len(jobs),
        "wall_s": wall_s,
        "work_s": sum(work_s),
        "overhead_s": wall_s - sum(work_s),
        "overhead_share": (wall_s - sum(work_s)) / wall_s,
        "job_work_s": work_s,
        "test_acc": max(m["test/acc"] for m in jobs),
    }


def lora_lab_figures(run_dir: Path, tokens_path: Path | None) -> dict:
    """The benchmark's figures from a finished lora_lab job (metrics.json), with its token count
    when tokens_path is given (gradient training)."""
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    needed = LORA_LAB_KEYS + (GRADIENT_KEYS if tokens_path is not None else ())
    missing = sorted(set(needed) - set(metrics))
    if missing:
        raise RunError(
            f"{metrics_path} lacks {missing}: lora_lab's metric names changed; update bench.jobs.LORA_LAB_KEYS"
        )
    figures = {
        "test_acc": metrics["test/acc"],
        "test_f1_macro": metrics["test/f1_macro"],
        "val_acc_best": metrics["val/acc_best"],
        "train_s": metrics["time/train_s"],
        "examples_per_s": metrics["throughput/train_examples_per_s"],
        "peak_rss_mb": metrics["memory/peak_rss_mb"],
        "params_trainable": metrics["params/trainable"],
        "train_rows": metrics["data/train_rows"],
        "test_rows": metrics["data/test_rows"],
        "merged_dir": str(run_dir / "merged"),
    }
    if tokens_path is None:
        return figures
    if not tokens_path.is_file():
        raise RunError(f"{tokens_path} missing: the job ran no training batch through bench.token_counter.TokenCounter")
    return {
        **figures,
        "examples_seen": metrics["train/examples_seen"],
        "epochs_run": metrics["epochs"],
        "tokens": json.loads(tokens_path.read_text()),
    }
