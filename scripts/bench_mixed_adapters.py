"""The model thread's cost of a mixed-adapter batch, without HTTP: one adapter vs three, per precision.

    python scripts/bench_mixed_adapters.py --job <job dir with a pooled LoRA adapter> [--rounds 9]

`make bench-serve` measures the whole server; this isolates what issue 29 asks about, the forward
itself. For each precision it builds two engines from the same job: one adapter, and three ids of
that adapter on one base (so batches really mix). Each round times, alternating engines, one batch
of --batch single-text requests (what the batcher hands the model at 32 clients) and one request of
one text (1 client), on Banking77 test texts drawn afresh per round and shared by both engines.
Medians of rounds; the mixed/one ratio is per round, then its median (the VM's speed drifts).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lora_lab.config.hardware import cpu_has_native_bf16  # noqa: E402
from lora_lab.serve.engine import Engine  # noqa: E402
from lora_lab.serve.sources import resolve_source  # noqa: E402

NAMES = ("a", "b", "c")


def texts(limit: int = 3000) -> list[str]:
    path = Path(os.environ.get("LORA_LAB_DATA_DIR", REPO.parent / "shared" / "data")) / "banking77" / "test.csv"
    with path.open(newline="") as f:
        return [row["text"] for row in csv.DictReader(f)][:limit]


def engine(job: Path, precision: str, adapters: int) -> Engine:
    e = Engine(precision=precision)
    source = resolve_source(job)
    source.stack_dir = None  # the transformer's cost only: a stack adds the same TF-IDF work to both
    for name in NAMES[:adapters]:
        e.load(name, source)
    return e


def timed(e: Engine, requests: list[tuple[str, list[str]]]) -> float:
    start = time.perf_counter()
    e.predict(requests)
    return (time.perf_counter() - start) * 1000


def arguments(doc: str, rounds: int) -> argparse.ArgumentParser:
    """--job, --rounds, --batch and --precisions, as this script and bench_lora_forward.py take them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"])
    return parser


def main() -> None:
    args = arguments(__doc__, rounds=9).parse_args()
    pool, rng = texts(), random.Random(0)
    torch.set_num_threads(os.cpu_count() or 1)
    print(
        f"{'precision':9} | {'one: 32 texts ms':>16} | {'3 mixed ms':>10} | {'mixed/one req/s':>15} | {'1 text ms':>9}"
    )
    for precision in args.precisions:
        one, mixed = engine(args.job, precision, 1), engine(args.job, precision, 3)
        base = next(iter(mixed.bases.values()))
        print(precision, "mixable:", sorted(base.mixable), "of", sorted(base.heads))
        warm = rng.sample(pool, args.batch)
        for e in (one, mixed):
            e.predict([("a", warm)])
        t_one, t_mixed, t_single, ratios = [], [], [], []
        for _ in range(args.rounds):
            batch = rng.sample(pool, args.batch)
            t_one.append(timed(one, [("a", [t]) for t in batch]))
            t_mixed.append(timed(mixed, [(NAMES[i % 3], [t]) for i, t in enumerate(batch)]))
            t_single.append(timed(one, [("a", [batch[0]])]))
            ratios.append(t_one[-1] / t_mixed[-1])
        med = statistics.median
        print(f"{precision:9} | {med(t_one):16.1f} | {med(t_mixed):10.1f} | {med(ratios):14.0%} | {med(t_single):9.1f}")


if __name__ == "__main__":
    main()
