"""provenance.json: what a job's numbers came from, so any result traces back to code and data.

Written when a job starts (a failed job keeps it too):
- the git commit of the lora_lab code that ran, and whether tracked files differed from it
  (`dirty`; untracked files such as outputs/ do not count), or why there is none;
- the versions of python, lora_lab, torch, transformers, peft and lightning;
- the sha256 and size of every data file the dataset reads (Source.files(): the CSVs, the
  public sets' files, a synthetic generator's phrase table);
- the seed, the command line and the Hydra overrides;
- where it ran: the host, and the SLURM job when it ran in one.

Light on purpose: git and importlib.metadata only, no torch import (train.py writes it before
the job's libraries load). Hashing reads each file once: ~0.3 s for the 60 MB of the
multi-domain reviews on this machine.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from lora_lab.artifacts import file_sha256, write_json
from lora_lab.job.dir import PROVENANCE_FILE

PACKAGES = ("lora_lab", "torch", "transformers", "peft", "lightning")
CODE_DIR = Path(__file__).resolve().parents[1]  # lora_lab/


def git_state(code_dir: Path = CODE_DIR) -> dict[str, Any]:
    """{"commit", "dirty"} of the checkout holding `code_dir`, or {"commit": None, "why"}."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(code_dir), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except FileNotFoundError:
        return {"commit": None, "why": "git is not installed"}
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return {"commit": None, "why": f"{code_dir} is not in a git checkout (an installed package)"}
    return {"commit": commit, "dirty": bool(changed)}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def provenance(
    data_files: Iterable[Path], seed: int | None, overrides: list[str], paths: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`paths`: the job's paths node, resolved; recorded as absolute dirs, so that an export made later,
    with another LORA_LAB_DATA_DIR or none, still knows which dirs of this machine to keep out."""
    files = [{"path": str(p), "sha256": file_sha256(p), "bytes": p.stat().st_size} for p in data_files]
    return {
        "paths": {k: str(Path(v).resolve()) for k, v in (paths or {}).items() if isinstance(v, str) and v},
        "git": git_state(),
        "versions": versions(),
        "data_files": files,
        "seed": seed,
        "command": list(sys.orig_argv),  # as typed: `python -m lora_lab.train ...` (sys.argv[0] is the module's file)
        "overrides": list(overrides),
        "host": socket.gethostname(),
        "slurm_job": slurm_job(),
    }


def slurm_job() -> dict[str, str | None] | None:
    """The SLURM job this process runs in, or None outside SLURM: its id (sacct's JobIDRaw) and,
    for a task of an array, <array id>_<task> (squeue's and submitit's JOBID)."""
    if not (job_id := os.environ.get("SLURM_JOB_ID")):
        return None
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return {"id": job_id, "array_task": f"{array}_{task}" if array and task else None}


def write_provenance(
    run_dir: Path,
    data_files: Iterable[Path],
    seed: int | None,
    overrides: list[str],
    paths: dict[str, Any] | None = None,
) -> dict[str, Any]:
    record = provenance(data_files, seed, overrides, paths)
    write_json(run_dir / PROVENANCE_FILE, record)
    return record
