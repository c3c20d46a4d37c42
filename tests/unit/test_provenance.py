"""provenance.json: every job records its code commit, library versions, data files' sha256, seed and
command; the report groups jobs by it; a checkout's dirty flag counts tracked changes only.

Subprocess: git, because git_state's answer is about a real git checkout (HEAD, tracked vs
untracked changes); a checkout is built with git in milliseconds and no fake git would test it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from lora_lab.artifacts import read_json
from lora_lab.data.synthetic.tables import table_path
from lora_lab.job.provenance import git_state
from lora_lab.report.collect import read_job
from lora_lab.report.table import provenance_table

REPO = Path(__file__).resolve().parents[2]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_a_job_records_commit_versions_data_hashes_seed_and_overrides(served_jobs: dict[str, Path]):
    job = served_jobs["sales"]
    record = read_json(job / "provenance.json")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # the tests run from a checkout (CI clones one)
        assert record["git"]["commit"] == head.stdout.strip() and isinstance(record["git"]["dirty"], bool)
    assert record["versions"]["torch"] == metadata.version("torch")
    assert set(record["versions"]) == {"python", "lora_lab", "torch", "transformers", "peft", "lightning"}
    assert all(record["versions"].values())
    sales_notes = table_path("sales_notes")  # the synthetic generator's phrase table: the data it reads
    assert record["data_files"] == [
        {
            "path": str(sales_notes),
            "sha256": hashlib.sha256(sales_notes.read_bytes()).hexdigest(),
            "bytes": sales_notes.stat().st_size,
        }
    ]
    assert record["seed"] == 42 and record["command"] == sys.orig_argv
    assert "regime=lora" in record["overrides"] and "backbone=tiny_bert" in record["overrides"]


def test_the_dirty_flag_counts_tracked_changes_not_untracked_files(tmp_path: Path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    assert git_state(tmp_path) == {"commit": _git(tmp_path, "rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "metrics.json").write_text("{}")  # a job's output: untracked
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)["dirty"] is True


def test_outside_a_checkout_the_commit_is_none_and_says_why(tmp_path: Path):
    state = git_state(tmp_path)
    assert state["commit"] is None and "not in a git checkout" in state["why"]


def test_the_report_groups_jobs_by_provenance_and_flags_those_without(served_jobs: dict[str, Path], tmp_path: Path):
    jobs = [read_job(served_jobs["sales"]), read_job(served_jobs["tickets"])]
    old = read_job(served_jobs["sales"])
    old.name, old.provenance = "old", None
    changed = read_job(served_jobs["sales"])
    changed.name = "changed"
    changed.provenance = {**changed.provenance, "versions": {**changed.provenance["versions"], "torch": "9.9.9"}}
    rows = provenance_table([*jobs, old, changed]).rows
    assert len(rows) == 4  # sales and tickets share code and versions but not data; old; changed
    by_jobs = {row[0]: row for row in rows}
    assert "no provenance.json" in by_jobs["old"][1] and "torch 9.9.9" in by_jobs["changed"][2]
    assert "sales_notes.yaml" in by_jobs[served_jobs["sales"].name][3]
