"""Seeds for the sweep's finalists: train the best configurations again, so the report can say
whether the winner beats the runner-up or is within noise (report/significance.py).

    python -m lora_lab.train -m hparams_search=fpb_front hydra.sweeper.seeds=3

One seed ranks configurations by luck as much as by merit: on 339 test sentences, one row is 0.3
points, and two seeds of one LoRA config differ by more than that. So once the study has used its
n_trials, each finalist runs again with the seeds after the job's own (seed=42: 43, 44, ...) until
it has `seeds` of them. Its jobs land in `<sweep dir>/<trial>-seed<seed>`, beside the trials'
dirs, so the report groups them with their trial (collect.py: one config, several seeds) and
prints mean ± 95% CI and the paired test.

The finalists: a multi-objective study's Pareto front; one objective, its best trials. Either is
cut to the `reseed_top_k` best by the (first) objective; unset, a front is kept whole and one
objective keeps 3 (the winner, the runner-up it is tested against, and one more). Setting
`reseed_top_k` alone means 3 seeds. Reseed jobs are not trials: the sampler never sees them,
and best_trial.json keeps the trials' single-seed values.

Resume: a rerun skips every reseed job that finished. With several workers on one study each one
reaches this step; a job is claimed by creating `<name>.claim` beside its dir (exclusive create),
so two workers never train the same one. A claim left by a dead process of this host is taken
over; one from another host is left alone and logged (delete the file to retry it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from lora_lab.errors import ConfigError
from lora_lab.job.dir import JobDir
from lora_lab.sweeper.objectives import answering_job
from lora_lab.sweeper.storage import DUPLICATE_OF_ATTR, JOB_DIR_ATTR

log = logging.getLogger(__name__)
DEFAULT_SEEDS_WITH_TOP_K = 3  # reseed_top_k alone: the fewest seeds whose t interval is of use
DEFAULT_TOP_K_ONE_OBJECTIVE = 3


@dataclass(frozen=True)
class ReseedJob:
    trial: int  # the trial whose params it repeats
    params: dict[str, Any]
    seed: int

    @property
    def name(self) -> str:
        return f"{self.trial}-seed{self.seed}"


def resolve_settings(seeds: int | None, top_k: int | None) -> tuple[int, int | None]:
    """(seeds per finalist, top k or None); ConfigError naming the key for a value that makes no sense."""
    for key, value in (("seeds", seeds), ("reseed_top_k", top_k)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"hydra.sweeper.{key}={value!r}: must be a positive integer (or null)")
    if seeds is None:
        seeds = DEFAULT_SEEDS_WITH_TOP_K if top_k is not None else 1
    if top_k is not None and seeds == 1:
        raise ConfigError(
            f"hydra.sweeper.reseed_top_k={top_k} with hydra.sweeper.seeds=1 trains nothing again: "
            "set seeds to 2 or more (3 gives a usable 95% interval), or drop reseed_top_k"
        )
    return seeds, top_k


def finalists(
    trials: Sequence[FrozenTrial], best: Sequence[FrozenTrial], maximize_first: bool, top_k: int | None, front: bool
) -> list[FrozenTrial]:
    """The trials to reseed, best first by the (first) objective, one per configuration.
    `best`: the study's best trials (its front with several objectives; ignored with one)."""
    if front:
        pool = list(best)
    else:
        pool = [t for t in trials if t.state == TrialState.COMPLETE]
        top_k = top_k or DEFAULT_TOP_K_ONE_OBJECTIVE
    # Originals before their duplicates, so the job that trained is the one named.
    pool.sort(key=lambda t: (-t.values[0] if maximize_first else t.values[0], DUPLICATE_OF_ATTR in t.user_attrs))
    chosen: list[FrozenTrial] = []
    seen: set[object] = set()
    for trial in pool:
        # One configuration, one finalist: params the sweeper answered from a trial, and params that
        # compose the same effective config (full at rank 8 and 16), share the job that trained.
        if (key := trained_by(trial)) not in seen:
            seen.add(key)
            chosen.append(trial)
    return chosen[:top_k] if top_k else chosen


def trained_by(trial: FrozenTrial) -> object:
    """What identifies the configuration a trial ran: the job that answered it, else its params."""
    if (job_dir := trial.user_attrs.get(JOB_DIR_ATTR)) is None:
        return tuple(sorted(trial.params.items()))
    return answering_job(Path(job_dir)).path.resolve()


def reseed_jobs(chosen: Sequence[FrozenTrial], base_seed: int, seeds: int) -> list[ReseedJob]:
    """The extra jobs: each finalist's params with base_seed + 1 ... base_seed + seeds - 1."""
    return [ReseedJob(trial.number, dict(trial.params), base_seed + k) for trial in chosen for k in range(1, seeds)]


def check_seed_not_searched(params: Mapping[str, Any]) -> None:
    """Reseeding varies `seed`: a search that samples it has no fixed seed to add to."""
    if "seed" in params:
        raise ConfigError(
            "hydra.sweeper.seeds: the search space samples `seed` itself, so reseeding its finalists would "
            "collide with its trials; remove seed from hydra.sweeper.params, or set hydra.sweeper.seeds=1"
        )


def to_run(sweep_dir: Path, jobs: Sequence[ReseedJob]) -> list[ReseedJob]:
    """The jobs not finished yet that this process claims (see the module docstring)."""
    mine = []
    for job in jobs:
        if JobDir(sweep_dir / job.name).is_finished:
            continue
        if claim(sweep_dir / f"{job.name}.claim"):
            mine.append(job)
    return mine


def claim(path: Path) -> bool:
    """Create the claim file (exclusive); True when this process holds it now."""
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        with open(path, "x") as f:
            json.dump(me, f)
        return True
    except FileExistsError:
        pass
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        holder = {}
    if holder == me:
        return True  # this process, in an earlier call
    if holder.get("host") == me["host"] and isinstance(pid := holder.get("pid"), int) and not _alive(pid):
        path.write_text(json.dumps(me))
        log.info("%s: its process (pid %d) is gone; this worker takes the job over.", path.name, pid)
        return True
    log.info("%s: claimed by %s; delete the file to run it here if that worker died.", path.name, holder or "?")
    return False


def release(sweep_dir: Path, job: ReseedJob) -> None:
    (sweep_dir / f"{job.name}.claim").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
