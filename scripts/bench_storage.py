"""What one Optuna storage costs a lora_lab sweep per trial, with several workers at once.

    python scripts/bench_storage.py [--workers 3] [--trials 20] [--storages sqlite journal postgresql]

Each worker process does, per trial, the storage calls a real trial makes (no training): the
sweeper's stale check, ledger read, ask, job-dir attr and heartbeats; the job's re-attach to its
trial and three validation reports with a pruning check; the sweeper's tell. The figure is the
wall time of those calls per trial: what the storage adds to every trial, which a training job of
seconds to hours hides or not. PostgreSQL runs on loopback from the test fixture (tests/services.py).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402 - after the sys.path setup above
from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402 - after the sys.path setup above

from lora_lab.sweeper.config import PRUNERS, SAMPLERS  # noqa: E402 - after the sys.path setup above
from lora_lab.sweeper.ledger import Ledger  # noqa: E402 - after the sys.path setup above
from lora_lab.sweeper.recovery import retry_abandoned_trial  # noqa: E402 - after the sys.path setup above
from lora_lab.sweeper.resume import open_study  # noqa: E402 - after the sys.path setup above
from lora_lab.sweeper.storage import attach_trial, open_storage  # noqa: E402 - after the sys.path setup above

STUDY = "bench"
SPACE = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "rank": CategoricalDistribution([4, 8, 16])}
VALIDATIONS = 3


def one_worker(url: str, trials: int, seed: int, start: mp.Barrier, out: mp.Queue) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, as the sweeper does
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    storage = open_storage(url, heartbeat_interval=30, grace_period=90, on_stale_trial=retry_abandoned_trial)
    study = optuna.load_study(study_name=STUDY, storage=storage, sampler=optuna.samplers.RandomSampler(seed))
    start.wait()
    costs = []
    for _ in range(trials):
        began = time.perf_counter()
        optuna.storages.fail_stale_trials(study)  # sweeper: dead workers' trials
        _ = Ledger(study.get_trials(deepcopy=False)).used  # sweeper: the budget
        trial = study.ask(SPACE)
        storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr("job_dir", f"/sweep/{trial.number}")
        job_trial = attach_trial(url, STUDY, trial.number)  # the job, in its own process on a cluster
        for step in range(VALIDATIONS):
            job_trial.report(0.5 + 0.01 * step, step)
            job_trial.should_prune()
        storage.record_heartbeat(trial._trial_id)
        study.tell(trial, 0.5)
        costs.append(time.perf_counter() - began)
    out.put(costs)


def measure(url: str, workers: int, trials: int) -> dict[str, float]:
    storage = open_storage(url)
    open_study(storage, STUDY, "maximize", {"optimized_metric": "val/acc_best"}, SAMPLERS["random"], PRUNERS["median"])
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=one_worker, args=(url, trials, seed, start, out)) for seed in range(workers)]
    for proc in procs:
        proc.start()
    start.wait()
    began = time.perf_counter()
    costs = [c for _ in procs for c in out.get(timeout=600)]
    wall = time.perf_counter() - began
    for proc in procs:
        proc.join()
    costs.sort()
    return {
        "median_ms": 1000 * statistics.median(costs),
        "p95_ms": 1000 * costs[int(0.95 * (len(costs) - 1))],
        "trials_per_s": len(costs) / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20, help="per worker")
    parser.add_argument("--storages", nargs="+", default=["sqlite", "journal", "postgresql"])
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each round runs every storage once, in turn")
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in args.storages}
    with ExitStack() as stack:
        server = None
        if "postgresql" in args.storages:
            from tests.services import postgres

            server = stack.enter_context(postgres())
            os.environ["PGPASSWORD"] = server.password
        for round_ in range(args.repeats):  # alternate storages within a round: the VM's speed drifts
            for name in args.storages:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                url = {"sqlite": f"sqlite:///{tmp}/optuna.db", "journal": f"journal:///{tmp}/optuna.journal"}.get(name)
                if name == "postgresql":  # a fresh database per round, as the files are fresh
                    url = server.fresh_database(f"bench{round_}")
                rows[name].append(measure(url, args.workers, args.trials))
    print(f"{args.workers} workers x {args.trials} trials, {args.repeats} rounds; medians over rounds")
    print(f"{'storage':<12}{'per trial ms (median)':>24}{'p95 ms':>10}{'trials/s':>10}")
    for name, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:<12}{med['median_ms']:>24.1f}{med['p95_ms']:>10.1f}{med['trials_per_s']:>10.1f}")


if __name__ == "__main__":
    main()
