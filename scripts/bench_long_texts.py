"""Long texts: the default LoRA job on multi_domain_sentiment under each way of cutting a review,
beside the TF-IDF baseline. Each job runs alone, one after another, in its own process.

    python scripts/bench_long_texts.py [--modes tfidf head128 auto head_tail tail chunk] [--out bench_results/long]
                                       [-- extra overrides, e.g. trainer.max_epochs=1]

Prints test accuracy, macro-F1, the max_length used, the share of training texts longer than
it, and train / test seconds. Needs LORA_LAB_DATA_DIR (the Makefile sets it). About 3.5 hours on
2 cores for the six modes at the default 3 epochs (each 512-token cut about 41 minutes, chunk an hour).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASET = "dataset=multi_domain_sentiment"
MODES: dict[str, list[str]] = {
    "tfidf": ["regime=tfidf"],
    "head128": ["data.max_length=128"],  # the old fixed default
    "auto": [],  # the default: data.max_length=auto, truncation=head
    "head_tail": ["data.truncation=head_tail"],  # auto length, first quarter + the rest from the end
    "tail": ["data.truncation=tail"],
    # Auto length, the whole text as up to 4 windows, logits averaged. A batch of the longest texts
    # holds up to 4x the sequences: half the texts per step and two steps per update keep the
    # effective batch at 32. Peak resident memory, measured: 23.8 GB (tail at 512 x 32: 17.4 GB).
    "chunk": [
        "data.long_text=chunk",
        "data.batch_size=16",
        "trainer.accumulate_grad_batches=2",
        "data.eval_batch_size=64",
    ],
}


def run(mode: str, out: Path, extra: list[str]) -> dict:
    run_dir = out / mode
    command = [
        sys.executable,
        "-m",
        "lora_lab.train",
        DATASET,
        *MODES[mode],
        *extra,
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    m = json.loads((run_dir / "metrics.json").read_text())
    return {
        "mode": mode,
        "acc": m["test/acc"],
        "f1": m["test/f1_macro"],
        "max_length": m.get("data/max_length"),
        "truncated": m.get("data/truncated_share", {}).get("train"),
        "train_s": m["time/train_s"],
        "test_s": m.get("time/test_s"),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / time.strftime("long_%Y%m%d-%H%M%S"))
    parser.add_argument("extra", nargs="*", help="overrides for every job (after --)")
    args = parser.parse_args()
    rows = []
    for mode in args.modes:
        rows.append(run(mode, args.out, args.extra))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nmulti_domain_sentiment (all domains), overrides: {' '.join(args.extra) or 'none'}")
    print(
        f"{'mode':<10}{'test acc':>9}{'macro-F1':>9}{'max_len':>8}"
        f"{'train>len':>10}{'train s':>9}{'test s':>8}{'wall s':>8}"
    )
    for r in rows:
        cut = f"{r['truncated']:.1%}" if r["truncated"] is not None else "-"
        print(
            f"{r['mode']:<10}{r['acc']:>9.4f}{r['f1']:>9.4f}{str(r['max_length']):>8}{cut:>10}"
            f"{r['train_s']:>9.0f}{(r['test_s'] or 0):>8.1f}{r['wall_s']:>8.0f}"
        )


if __name__ == "__main__":
    main()
