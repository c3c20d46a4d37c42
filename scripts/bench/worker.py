"""The protocol of a benchmark subprocess: read <run_dir>/spec.json, write <run_dir>/result.json.
Standard library only: a worker pays for no import it would not make itself.

Each worker runs in its own process (`python -m bench.<worker> <run_dir>`), so its peak RSS is
its own: ru_maxrss of RUSAGE_SELF, which Linux reports in KiB.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

SPEC, RESULT = "spec.json", "result.json"


def write_spec(run_dir: Path, spec: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SPEC).write_text(json.dumps(spec, indent=2))


def read_spec() -> tuple[Path, dict]:
    """The run dir from argv and the spec the parent wrote there."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: python -m {sys.argv[0]} <run_dir> (the dir holding {SPEC})")
    run_dir = Path(sys.argv[1])
    return run_dir, json.loads((run_dir / SPEC).read_text())


def write_result(run_dir: Path, result: dict) -> None:
    (run_dir / RESULT).write_text(json.dumps(result, indent=2))


def read_result(run_dir: Path) -> dict:
    path = run_dir / RESULT
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: the worker exited without writing its result (see its log)")
    return json.loads(path.read_text())


def read_rows(path: str | Path) -> dict:
    """The rows.json bench.lab.write_rows wrote: {"train": {"texts", "labels"}, "test": ..., "seed", ...}."""
    return json.loads(Path(path).read_text())


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
