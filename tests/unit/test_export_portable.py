"""export/portable.py on known strings: which roots are rewritten, in what order, and what the last
check reads back (the whole export is tested in test_export.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lora_lab.export.portable import leaks, machine_roots, scrub


def test_the_longest_root_wins_and_a_path_under_it_keeps_its_tail(tmp_path: Path):
    job = tmp_path / "runs" / "7"
    roots = machine_roots(job, {"data_dir": str(tmp_path / "data"), "cache_dir": None, "output_dir": str(job)})
    text = f"{job}/checkpoints and {job.parent} and {tmp_path / 'data'}/fpb/a.txt and sqlite:///{job.parent}/o.db"
    assert scrub({"k": [text]}, roots) == {
        "k": ["<job dir>/checkpoints and <runs dir> and <data dir>/fpb/a.txt and sqlite:///<runs dir>/o.db"]
    }
    assert scrub(sys.prefix + "/lib", roots) == "<python env>/lib"
    assert scrub(3, roots) == 3 and scrub(None, roots) is None


def test_the_root_dir_and_relative_dirs_are_never_roots(tmp_path: Path):
    roots = dict(machine_roots(tmp_path / "job", {"data_dir": "data", "cache_dir": "/", "output_dir": None}))
    assert "/" not in roots and "data" not in roots
    assert roots[os.getcwd()] in ("<working dir>", "~", "<python env>", "<runs dir>", "<job dir>")


def test_the_last_check_reads_every_text_file_but_the_vocabulary(tmp_path: Path):
    (tmp_path / "merged").mkdir()
    (tmp_path / "README.md").write_text("trained in /home/alice/jobs/3")
    (tmp_path / "merged" / "config.json").write_text('{"_name_or_path": "/home/alice/models/base"}')
    (tmp_path / "tokenizer.json").write_text('{"vocab": {"/home/alice": 7}}')  # a BPE token, not a dir
    (tmp_path / "merged" / "model.safetensors").write_bytes(b"/home/alice")
    assert leaks(tmp_path, ["/home/alice"]) == ["README.md: /home/alice", "merged/config.json: /home/alice"]


def test_the_dirs_the_job_resolved_are_roots_when_the_exporting_environment_names_none(tmp_path: Path):
    """Trained with LORA_LAB_DATA_DIR=/srv/..., exported with it unset (the config resolves to `data`):
    provenance.json's `paths` still name the data dir; a job from before them, its data files' dir."""
    paths = {"data_dir": "data", "cache_dir": None, "output_dir": None}
    data_file = {"path": "/srv/corpora/fpb/all.txt", "sha256": "0" * 64, "bytes": 1}
    recorded = {"paths": {"data_dir": "/srv/corpora", "cache_dir": "/srv/cache"}, "data_files": [data_file]}
    roots = machine_roots(tmp_path / "job", paths, recorded)
    assert scrub("/srv/corpora/fpb/all.txt; /srv/cache/x", roots) == "<data dir>/fpb/all.txt; <cache dir>/x"
    older = machine_roots(tmp_path / "job", paths, {"data_files": [data_file]})
    assert scrub(data_file["path"], older) == "<data files' dir>/all.txt"
    assert "/srv/corpora/fpb" in dict(older)  # so the last check would catch it too
