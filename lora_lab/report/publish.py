"""Put a finished report into place in one step: built in a temp dir beside it, then swapped in.

A reader sees the old report or the new one, never half of one. Only a previous report
(or an empty dir) is ever replaced, and never inside a job's dir: job artifacts stay untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lora_lab.report.collect import is_job_dir
from lora_lab.report.errors import ReportError

REPORT_FILES = ("report.md", "report.html")


@contextmanager
def staged_report_dir(out: Path) -> Iterator[Path]:
    """Yield a temp dir to write the report into; on success it becomes `out`, on error it is deleted."""
    check_output_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a report is for everyone who can read the sweep
    try:
        yield tmp
        if out.exists():
            # os.replace cannot replace a non-empty dir: move the old report aside first, then drop it.
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_dir(out: Path) -> None:
    """Refuse a job dir (or anything inside one) and any existing dir that is not a previous report."""
    inside = next((p for p in (out, *out.parents) if p.is_dir() and is_job_dir(p)), None)
    if inside is not None:
        raise ReportError(
            f"--out {out} lies in the job dir {inside}: the report never writes into a job's dir; choose another --out"
        )
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not any((out / f).is_file() for f in REPORT_FILES))
    ):
        raise ReportError(
            f"--out {out} exists and holds no earlier report ({' or '.join(REPORT_FILES)}): "
            "the report only replaces its own output; choose a new or empty dir"
        )
