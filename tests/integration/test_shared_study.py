"""Three sweep workers on one study, as a cluster runs them: each in its own process and sweep dir,
one of them killed with SIGKILL mid-trial. On a real PostgreSQL server and on a journal file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lora_lab.artifacts import read_json
from lora_lab.sweeper.storage import RETRY_OF_ATTR, SURPLUS_ATTR, open_storage
from tests.integration.test_sweep import ROOT, _command, _job_dirs
from tests.services import postgres, wait_for

N_TRIALS = 4
# Six configs for three random samplers: they propose each other's params, which must not train twice.
SPACE = [
    "hydra/sweeper=lora_lab_optuna",
    "hydra/sweeper/sampler=random",
    "rank=choice(2,4,8)",
    "regime.learning_rate=choice(1e-3,3e-3)",
    "trainer.max_epochs=1",
    f"hydra.sweeper.n_trials={N_TRIALS}",
]
# A killed worker's trial is retried 10 s after its last beat. The beats come from each worker's own
# heartbeat process (heartbeat.py), so a busy job does not delay them; and if a loaded machine still
# starves a live worker that long, its result reaches the retry instead of its params training twice.
HEARTBEAT = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=10"]


@pytest.fixture(params=["journal", "postgresql"])
def shared_storage(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, dict[str, str]]]:
    """(storage URL, the environment it needs: the workers' and this test's)."""
    if request.param == "journal":
        yield f"journal:///{tmp_path}/optuna.journal", {}
    else:
        with postgres() as server:
            monkeypatch.setenv("PGPASSWORD", server.password)
            yield server.url, {"PGPASSWORD": server.password}


def test_three_workers_share_a_study_and_survive_a_killed_one(
    tmp_path: Path, shared_storage: tuple[str, dict[str, str]]
):
    url, env = shared_storage
    sweeps = [tmp_path / f"worker{i}" for i in range(3)]
    workers = [
        subprocess.Popen(
            _command(
                sweep,
                *SPACE,
                f"hydra.sweeper.sampler.seed={i + 1}",
                f"hydra.sweeper.storage={url}",
                heartbeat=HEARTBEAT,
            ),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: the kill reaches this worker and its job only
        )
        for i, sweep in enumerate(sweeps)
    ]

    # SIGKILL the first worker whose job runs: its trial is left RUNNING, its heartbeat stops.
    def started() -> int | None:
        for worker in workers:
            assert worker.poll() is None, f"a worker ended before any job started: {worker.stderr.read()[-3000:]}"
        return next(
            (
                i
                for i, s in enumerate(sweeps)
                if s.is_dir() and any((d / "status.json").exists() for d in _job_dirs(s).values())
            ),
            None,
        )

    wait_for(lambda: started() is not None, timeout=600, what="a worker's first job")
    victim = started()
    os.killpg(workers[victim].pid, signal.SIGKILL)
    workers[victim].wait()
    (killed_dir,) = _job_dirs(sweeps[victim]).values()
    survivors = [w for i, w in enumerate(workers) if i != victim]
    for worker in survivors:
        _, stderr = worker.communicate(timeout=900)
        assert worker.returncode == 0, stderr[-3000:]

    storage = open_storage(url)
    study = optuna.load_study(study_name="lora_lab", storage=storage)
    trials = [t for t in study.trials if SURPLUS_ATTR not in t.user_attrs]
    # Exactly n_trials finished; the only failure is the killed one.
    summary = [(t.number, t.state.name, t.params, t.user_attrs) for t in study.trials]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == N_TRIALS, summary
    (killed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert killed.number == int(killed_dir.name)
    assert read_json(killed_dir / "status.json")["state"] == "failed"
    # Every job dir is its trial's, none shared; no parameter set trained twice (repeats took the
    # finished trial's value as `duplicate_of`).
    job_dirs = {n: d for sweep in sweeps for n, d in _job_dirs(sweep).items()}
    assert len(job_dirs) == sum(len(_job_dirs(s)) for s in sweeps)
    trained = [t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert sorted(job_dirs) == sorted([t.number for t in trained] + [killed.number])
    assert len({tuple(sorted(t.params.items())) for t in trained}) == len(trained)
    assert all((job_dirs[t.number] / "metrics.json").exists() for t in trained)
    # The killed trial's params ran again in a live worker: as its retry, or as the trial that was
    # waiting on them (a twin proposed while it ran), never both.
    (rerun,) = [t for t in trained if t.params == killed.params]
    assert rerun.number > killed.number and Path(rerun.user_attrs["job_dir"]).parent != sweeps[victim]
    retries = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == killed.number]
    assert retries in ([rerun], [])

    # One report from the shared study, run on the killed worker's dir, shows every worker's jobs.
    report = subprocess.run(
        [sys.executable, "-m", "lora_lab.report", str(sweeps[victim])],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    markdown = (sweeps[victim] / "report" / "report.md").read_text()
    rows = {line.split("|")[1].strip() for line in markdown.splitlines() if line.startswith("| ")}
    assert {str(n) for n in job_dirs} <= rows
    assert f"{killed.number} FAIL" in markdown and f"{rerun.number} COMPLETE" in markdown

    # The password reached the workers through PGPASSWORD only: no config, log or report holds it.
    for secret in env.values():
        leaks = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert not leaks, leaks


# Says it is ready once its imports are done, then opens `url` when the test creates the start file:
# every process then creates the new database's schema at once, however slowly each one started.
_OPEN_AT_ONCE = """
import os, sys, time
from lora_lab.sweeper.storage import open_storage
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
open_storage(sys.argv[1])
"""


def test_workers_opening_a_new_database_at_once_all_get_in(tmp_path: Path, shared_storage: tuple[str, dict[str, str]]):
    # Bare RDBStorage lost this race in 41 of 60 opens (PostgreSQL 15, six processes, ten databases):
    # UniqueViolation on pg_type, DuplicateTable, DuplicateObject. open_storage must let all six in.
    url, env = shared_storage
    start = tmp_path / "start"
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT_ONCE, url, str(start)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for opener in openers:  # all six imported optuna and sqlalchemy, and wait for the start
        assert opener.stdout.readline() == "ready\n", opener.stderr.read()[-2000:]
    start.touch()
    for opener in openers:
        _, stderr = opener.communicate(timeout=120)
        assert opener.returncode == 0, stderr[-2000:]
