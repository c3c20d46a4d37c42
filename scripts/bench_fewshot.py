"""Few-shot: lora_lab's regime=contrastive beside SetFit itself, on lora_lab's own few-shot rows.

    python scripts/bench_fewshot.py [--settings fpb8 fpb16 banking77_8] [--seeds 1 2 3]
                                    [--out bench_results/fewshot] [-- extra lora_lab overrides]

For each setting and seed, lora_lab's DataModule picks the rows (shots_per_class with that seed,
after its repairs and split) and writes them to rows.json; then, in turn, `python -m lora_lab.train
regime=contrastive` and SetFit (scripts/bench/setfit_worker.py, its defaults: num_iterations=20,
batch 16, 1 epoch, the same MiniLM) train on them, each in its own process, and are scored on the
same test rows. Which runs first alternates from seed to seed, so a drift in this VM's speed
falls on both alike. Prints accuracy and training seconds side by side, and each setting's
medians. Needs the `bench` extra (setfit) and LORA_LAB_DATA_DIR; `make bench-fewshot` has both.
About 20 minutes on 2 cores for fpb8 and fpb16, and as much again for banking77_8.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.lab import REPO, check_data, write_rows

SETTINGS: dict[str, list[str]] = {
    "fpb8": ["dataset=financial_phrasebank", "shots_per_class=8"],  # all-agree rows (the dataset's default)
    "fpb16": ["dataset=financial_phrasebank", "shots_per_class=16"],
    "banking77_8": ["dataset=banking77", "shots_per_class=8"],
}


def run_lora_lab(data: list[str], out: Path, extra: list[str]) -> dict:
    run_dir = out / "contrastive"
    command = [
        sys.executable,
        "-m",
        "lora_lab.train",
        "regime=contrastive",
        *data,
        *extra,
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"lora_lab failed ({' '.join(command)}):\n{proc.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"acc": metrics["test/acc"], "train_s": metrics["time/train_s"]}


def run_setfit(rows: Path) -> dict:
    command = [sys.executable, str(REPO / "scripts" / "bench" / "setfit_worker.py"), str(rows)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"SetFit failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=REPO / "bench_results" / time.strftime("fewshot_%Y%m%d-%H%M%S"))
    parser.add_argument("extra", nargs="*", help="overrides for the lora_lab jobs only (after --)")
    args = parser.parse_args()
    for setting in args.settings:
        check_data(SETTINGS[setting])
    try:
        import setfit  # noqa: F401 - imported only to check that SetFit is installed
    except ImportError as err:
        raise SystemExit(
            "error: SetFit is not installed: pip install -e '.[bench]' -c constraints.txt (make bench-fewshot does)"
        ) from err
    results = []
    for setting in args.settings:
        for k, seed in enumerate(args.seeds):
            data = [*SETTINGS[setting], f"seed={seed}"]
            out = args.out / f"{setting}_seed{seed}"
            out.mkdir(parents=True, exist_ok=True)
            rows = write_rows(data, out / "rows.json")
            runs = {
                "lora_lab": lambda data=data, out=out: run_lora_lab(data, out, args.extra),
                "setfit": lambda out=out: run_setfit(out / "rows.json"),
            }
            order = list(runs) if k % 2 == 0 else list(reversed(runs))
            row = {
                "setting": setting,
                "seed": seed,
                "train_rows": len(rows["train"]["texts"]),
                "test_rows": len(rows["test"]["texts"]),
            }
            for name in order:
                row[name] = runs[name]()
            results.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print_table(results, args.extra)


def print_table(results: list[dict], extra: list[str]) -> None:
    print(f"\nregime=contrastive {' '.join(extra)} vs SetFit 1.2 (defaults), accuracy on the same test rows")
    print(
        f"{'setting':<13}{'seed':>5}{'rows':>6}{'test':>6}"
        f"{'lora_lab':>10}{'SetFit':>8}{'lora_lab s':>12}{'SetFit s':>10}"
    )
    for r in results:
        print(
            f"{r['setting']:<13}{r['seed']:>5}{r['train_rows']:>6}{r['test_rows']:>6}{r['lora_lab']['acc']:>10.4f}"
            f"{r['setfit']['acc']:>8.4f}{r['lora_lab']['train_s']:>12.1f}{r['setfit']['train_s']:>10.1f}"
        )
    for setting in dict.fromkeys(r["setting"] for r in results):
        rs = [r for r in results if r["setting"] == setting]
        med = {
            name: {k: statistics.median(r[name][k] for r in rs) for k in ("acc", "train_s")}
            for name in ("lora_lab", "setfit")
        }
        verdict = "on par or better" if med["lora_lab"]["acc"] >= med["setfit"]["acc"] else "behind"
        print(
            f"{setting:<13}{'median':>11}{'':>6}{med['lora_lab']['acc']:>10.4f}{med['setfit']['acc']:>8.4f}"
            f"{med['lora_lab']['train_s']:>12.1f}{med['setfit']['train_s']:>10.1f}   lora_lab {verdict}"
        )


if __name__ == "__main__":
    main()
