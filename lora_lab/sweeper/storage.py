"""Where a study lives: the storage URL, opening it from the sweeper or a job, and study.json.

One study, many processes: the sweeper asks and tells, each job reports its validation metric
to its own trial, other sweep workers ask for more trials; all through the same storage:
- sqlite:///<sweep dir>/optuna.db (the default): a few processes on one machine;
- journal:///<abs path>: an append-only file (journal.py), many processes on one node, no server;
- postgresql://user@host[:port]/db (or MySQL): workers on many machines.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from lora_lab.artifacts import write_json
from lora_lab.errors import ConfigError
from lora_lab.sweeper.journal import JOURNAL_SCHEME, HeartbeatJournalStorage

STUDY_FILE = "study.json"
# Study user attrs: what a job or lora_lab.report needs to know about the sweep that made the study.
PRUNER_ATTR = "lora_lab:pruner"
SIGNATURE_ATTR = "lora_lab:search_space"
METRIC_ATTR = "lora_lab:optimized_metric"
OBJECTIVES_ATTR = "lora_lab:objectives"  # [[metric, direction], ...]: a study of hydra.sweeper.objectives
# Trial user attrs, set by the sweeper unless noted.
JOB_DIR_ATTR = "job_dir"
ERROR_ATTR = "error"  # why a FAIL trial failed
PRUNED_AT_ATTR = "pruned_at"  # set by the job's OptunaPruning: the validation step it stopped after
DUPLICATE_OF_ATTR = "duplicate_of"  # answered from this COMPLETE trial's value, not trained again
RETRY_OF_ATTR = "retry_of"  # re-runs the params of this trial, left RUNNING by a dead worker
SURPLUS_ATTR = "surplus"  # asked past n_trials by a worker racing others for the last slot; never run
# Set by the job's FirstObjectivePruning in a study of several objectives, where Optuna refuses
# trial.report: `intermediate/<step>` = the first objective after validation step <step>.
INTERMEDIATE_ATTR_PREFIX = "intermediate/"
# SQLite lets one writer in at a time; the others wait up to this many seconds instead of failing
# with "database is locked". Enough for a few processes on one machine (sweepers, their jobs'
# per-epoch reports, heartbeats); many workers or machines want PostgreSQL/MySQL. SQLite's
# locking is unreliable on network file systems (NFS): keep optuna.db on a local disk.
SQLITE_BUSY_TIMEOUT_S = 60
# Workers started together on a new database race to create Optuna's schema. Measured on PostgreSQL
# 15 (10 rounds of 6 processes opening a fresh database at once, bare RDBStorage): 41 of 60 opens
# failed, as IntegrityError (pg_type's unique index), DuplicateTable or DuplicateObject. Every loser
# lost to a winner that made progress, so a few attempts, spread by a random wait, all get through.
SCHEMA_RACE_ATTEMPTS = 5


class StorageError(ConfigError):
    """A storage URL the sweep cannot use safely; the message says why and what to do."""


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    """The study's URL: as given, or a SQLite file in the sweep dir (absolute, so any job cwd works)."""
    url = storage or f"sqlite:///{sweep_dir.resolve() / 'optuna.db'}"
    if url.startswith(f"{JOURNAL_SCHEME}:") and not url.startswith(f"{JOURNAL_SCHEME}:///"):
        raise StorageError(
            f"hydra.sweeper.storage={url}: a journal storage is an absolute file path, "
            f"{JOURNAL_SCHEME}:///<abs path>/optuna.journal (three slashes), so that jobs started in other dirs find it"
        )
    if make_url(url).password is not None:
        raise StorageError(
            "hydra.sweeper.storage carries a password; the URL is written to study.json and to every job's "
            "config (and so to W&B). Leave it out of the URL and give it to the driver instead: PGPASSWORD or "
            "~/.pgpass for PostgreSQL, MYSQL_PWD or ~/.my.cnf for MySQL."
        )
    return url


def journal_path(url: str) -> str | None:
    """The file of a journal:///<abs path> URL; None for an RDB URL."""
    prefix = f"{JOURNAL_SCHEME}://"
    return url[len(prefix) :] if url.startswith(prefix) else None


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    on_stale_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.storages.BaseStorage:
    """The storage behind `url`; with a heartbeat for the sweeper (jobs only report, they need none)."""
    if (path := journal_path(url)) is not None:
        return HeartbeatJournalStorage(path, heartbeat_interval, grace_period, on_stale_trial)
    engine_kwargs: dict[str, Any] = {}
    if make_url(url).get_backend_name() == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}

    def build() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats are "experimental" since Optuna 2.9
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=on_stale_trial,
            )

    # The loser of the schema race fails on what the winner just made; opening again finds it in place.
    for _ in range(SCHEMA_RACE_ATTEMPTS - 1):
        try:
            return build()
        except (IntegrityError, OperationalError, ProgrammingError):
            time.sleep(random.uniform(0.5, 1.5))
    try:
        return build()
    except OperationalError as err:  # a server down, a wrong port, a missing or wrong password
        raise StorageError(
            f"hydra.sweeper.storage={url}: cannot connect ({str(err.orig).strip().splitlines()[0]}). Check that the "
            "server runs and the URL's host, port, user and database; give the password in PGPASSWORD or ~/.pgpass "
            "(MYSQL_PWD or ~/.my.cnf for MySQL), never in the URL"
        ) from err
    except ProgrammingError as err:  # e.g. a role that may not create tables in the database
        raise StorageError(
            f"hydra.sweeper.storage={url}: cannot create or read Optuna's tables "
            f"({str(err.orig).strip().splitlines()[0]}). Give the URL's user a database it owns, or the right to "
            "create tables in it"
        ) from err
    except ImportError as err:
        raise StorageError(
            f"hydra.sweeper.storage={url}: no database driver for it ({err.__cause__ or err}). "
            "For PostgreSQL: pip install 'lora_lab[cluster]' (psycopg 3)"
        ) from err


def write_study_file(
    sweep_dir: Path, url: str, study: optuna.Study, optimized_metric: str, objectives: dict[str, str] | None = None
) -> None:
    """<sweep dir>/study.json: how lora_lab.report (or optuna-dashboard) opens this study. With several
    objectives, `direction` and `optimized_metric` name the first one (what older readers plot) and
    `objectives` all of them, in the study's order."""
    first = next(iter(objectives.items())) if objectives else (optimized_metric, study.directions[0].name.lower())
    write_json(
        sweep_dir / STUDY_FILE,
        {
            "storage": url,
            "study_name": study.study_name,
            "direction": first[1],
            "optimized_metric": first[0],
            **({"objectives": dict(objectives)} if objectives else {}),
        },
    )


def attach_trial(url: str, study_name: str, number: int) -> optuna.Trial:
    """Re-attach, from a job's process, to the sweeper's running trial `number`.

    The pruner lives in memory, not in the storage, so the sweeper leaves its config in the
    study's user attrs and the job builds the same one. The job samples nothing: a RandomSampler
    keeps optuna.Trial's constructor from setting up TPE for nothing.
    """
    from hydra.utils import instantiate

    storage = open_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler())
    if PRUNER_ATTR not in study.user_attrs:
        raise StorageError(
            f"study {study_name!r} in {url} was not created by lora_lab's sweeper (no {PRUNER_ATTR} user attr): "
            "a job re-attaches only to trials of a hydra/sweeper=lora_lab_optuna sweep"
        )
    study.pruner = instantiate(study.user_attrs[PRUNER_ATTR])
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
    return optuna.Trial(study, trial_id)
