"""An output dir on a read-only or too full disk is refused at the start: one `error:` line, exit 2,
nothing written. Real disks: small tmpfs mounts (root only; skipped where mount is refused).

An integration test: it mounts real file systems and runs `python -m lora_lab.train` processes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_ARGS = ["trainer.enable_progress_bar=false"]


def _mount(path: Path, options: str) -> bool:
    path.mkdir()
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0
    )


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A 4 MiB tmpfs (too small for a MiniLM job) and a read-only one."""
    mounts = {"small": tmp_path / "small", "read_only": tmp_path / "read_only"}
    mounted = [p for name, p in mounts.items() if _mount(p, "size=4m" if name == "small" else "ro,size=1m")]
    try:
        if len(mounted) < len(mounts):
            pytest.skip("mount -t tmpfs was refused (needs root): no small or read-only disk to test on")
        yield mounts
    finally:
        for path in mounted:
            subprocess.run(["umount", str(path)], check=True)


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lora_lab.train", *args, *ENV_ARGS], capture_output=True, text=True, timeout=120
    )


def test_a_disk_too_small_for_the_job_is_refused_before_anything_is_written(disks: dict[str, Path]):
    out = _train(f"hydra.run.dir={disks['small'] / 'job'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith(f"error: hydra.run.dir={disks['small'] / 'job'}: 4 MiB free")
    assert "backbone minilm_l6 (87 MiB of weights) writes about 292 MiB" in out.stderr
    assert list(disks["small"].iterdir()) == []


@pytest.mark.parametrize("mode", ["-m", None])
def test_a_read_only_disk_is_refused_for_a_run_and_a_multirun(disks: dict[str, Path], mode: str | None):
    target = disks["read_only"] / "out"
    args = ["-m", "regime=lora,full", f"hydra.sweep.dir={target}"] if mode else [f"hydra.run.dir={target}"]
    out = _train(*args)
    key = "hydra.sweep.dir" if mode else "hydra.run.dir"
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        f"error: {key}={target}: cannot write under {disks['read_only']} (Read-only file system); "
        f"choose a writable dir, e.g. {key}=$HOME/lora_lab/out"
    )
