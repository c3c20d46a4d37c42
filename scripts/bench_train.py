"""Benchmark lora_lab against the plain transformers.Trainer + PEFT recipe a user would write.

Same backbone (embedded all-MiniLM-L6-v2), rows (Banking77 through lora_lab's own split),
epochs, batch size, learning rate and LoRA rank / target modules; each run in its own
subprocess, recipe and lora_lab alternating, for LoRA and full fine-tuning, `--repeats` times.
Then: lora_lab with its own defaults until it reaches the recipe's LoRA test accuracy (time to
accuracy), a 10-job multirun's overhead, lora_lab's best regime for this backbone
(experiment=banking77_minilm_best), inference with that run's merged/ model (fp32 and int8) and a
frozen-embedding logistic-regression probe. Prints one table (medians over repeats) and ends with one JSON line;
every run's raw result is written under --results-dir as it finishes.

    make bench        # Banking77 (about 9,000 training rows, 3,080 test), 3 epochs, 3 repeats
    make bench-quick  # smoke check: 13 rows per label (1,001 rows), 1 epoch, 1 repeat

Duration on an idle 2-core machine, measured (2026-11-24, default 3 repeats: 1 h 56 min in all):
per repeat recipe LoRA 432-573 s, recipe full 584-669 s, lora_lab LoRA 186-230 s, lora_lab full
230-280 s (28-29 min a repeat); probe 47 s, time to accuracy 88 s, sweep-overhead multirun 918 s,
best regime 811 s, inference ~30 s. The machine's speed drifts: the same recipe run took 50 to 66
ex/s across the three repeats, hence the per-repeat (paired) speedups beside the medians.

Timings on a shared machine are contended: compare runs taken under the same load only.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from transformers import AutoConfig

from bench.flops import EncoderShape
from bench.jobs import Runs
from bench.lab import REPO, check_data, write_rows
from bench.machine import machine_peak
from bench.report import (
    best_line,
    comparison_table,
    inference_int8_line,
    inference_line,
    json_line,
    paired_line,
    peak_line,
    probe_line,
    sweep_line,
    tta_line,
)
from bench.summary import comparison, infer_prefix, time_to_accuracy

# --quick: 13 seeded rows per label (77 x 13 = 1,001 training rows, lora_lab's shots_per_class,
# which the recipe reads through lora_lab's DataModule too), 1 epoch, 1 repeat. Validation and test stay whole.
MODES = {
    "full": {"repeats": 3, "epochs": 3, "tta_epochs": "1,2,3", "shots_per_class": None, "sweep_shots_per_class": None},
    "quick": {"repeats": 1, "epochs": 1, "tta_epochs": "1", "shots_per_class": 13, "sweep_shots_per_class": 13},
}


# Sweep overhead: 10 LoRA jobs (rank x lr) in one `-m` process, 1 epoch each on all training rows
# (--quick: 13 per label). The fixed costs (interpreter start and imports once; per job loading,
# the cache read, the best-epoch restore, writing adapter/, merged/ and the plot) are measured
# in seconds: their share shrinks as jobs grow, so the line prints the seconds per job too.
SWEEP_OVERRIDES = ["regime=lora", "rank=4,8", "regime.learning_rate=5e-4,1e-3,2e-3,3e-3,5e-3", "trainer.max_epochs=1"]
# lora_lab's best regime for MiniLM-L6 on Banking77 (conf/experiment/banking77_minilm_best.yaml).
BEST_EXPERIMENT = "experiment=banking77_minilm_best"
PROBE_CONFIG = "fewshot.yaml"
PROBE_OVERRIDES = ["regime=fewshot", "regime.method=logistic_regression"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke check: 1,001 training rows, 1 epoch, 1 repeat")
    p.add_argument("--repeats", type=int, help="recipe/lora_lab pairs per regime (full: 3, quick: 1)")
    p.add_argument("--epochs", type=int, help="epochs of the comparison runs (full: 3, quick: 1)")
    p.add_argument(
        "--tta-epochs", help="epochs tried in order for time to accuracy, e.g. 1,2,3 (full: 1,2,3, quick: 1)"
    )
    p.add_argument("--shots-per-class", type=int, help="training rows per label (full: all, quick: 13)")
    p.add_argument(
        "--sweep-shots-per-class",
        type=int,
        help="training rows per label of the sweep-overhead jobs (full: all, quick: 13)",
    )
    p.add_argument("--skip-best", action="store_true", help="skip the best-regime accuracy run (up to 30 min)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lora-lr", type=float, default=1e-3, help="learning rate of both LoRA runs")
    p.add_argument(
        "--full-lr", type=float, default=1e-4, help="learning rate of both full fine-tunes (lora_lab's default)"
    )
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--target-modules", default="query,value", help="LoRA target modules of both LoRA runs")
    p.add_argument("--infer-batch-size", type=int, default=128)
    p.add_argument("--latency-texts", type=int, default=200)
    p.add_argument("--fma-units", type=int, default=2, help="AVX-512 FMA units per core assumed for the nominal peak")
    p.add_argument("--clock-ghz", type=float, help="clock for the nominal peak (default: the CPU model name's)")
    p.add_argument("--fp32-lanes", type=int, help="fp32 SIMD lanes (default: 16 with AVX-512, 8 with AVX2)")
    p.add_argument("--results-dir", type=Path, help="default: bench_results/<timestamp>/ in the repo")
    args = p.parse_args(argv)
    for key, value in MODES["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.tta_epochs = [int(e) for e in str(args.tta_epochs).split(",")]
    args.target_modules = args.target_modules.split(",")
    if args.repeats < 1 or args.epochs < 1 or min(args.tta_epochs) < 1:
        p.error(f"--repeats {args.repeats}, --epochs {args.epochs}, --tta-epochs {args.tta_epochs}: each must be >= 1")
    if args.results_dir is None:
        args.results_dir = REPO / "bench_results" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return args


def data_overrides(args: argparse.Namespace) -> list[str]:
    """What selects the rows, for lora_lab jobs and workers alike."""
    shots = [f"shots_per_class={args.shots_per_class}"] if args.shots_per_class else []
    return ["dataset=banking77", *shots]


def compare(runs: Runs, args: argparse.Namespace, data: list[str], rows_path: Path) -> list[dict]:
    """Recipe and lora_lab alternating, per regime, `repeats` times."""
    lora = {"regime": "lora", "lr": args.lora_lr}
    full = {"regime": "full", "lr": args.full_lr}
    records = []
    for repeat in range(1, args.repeats + 1):
        for setting in (lora, full):
            regime, lr = setting["regime"], setting["lr"]
            tags = {"regime": regime, "repeat": repeat, "epochs": args.epochs}
            spec = {
                "regime": regime,
                "epochs": args.epochs,
                "learning_rate": lr,
                "batch_size": args.batch_size,
                "rank": args.rank,
                "target_modules": args.target_modules,
                "rows_path": str(rows_path),
            }
            recipe = runs.worker(f"recipe_{regime}_r{repeat}", "recipe", spec, system="recipe", **tags)
            overrides = [
                *data,
                f"regime={regime}",
                f"regime.learning_rate={lr}",
                f"trainer.max_epochs={args.epochs}",
                f"data.batch_size={args.batch_size}",
            ]
            if regime == "lora":
                overrides += [f"rank={args.rank}", f"regime.target_modules=[{','.join(args.target_modules)}]"]
            lab = runs.lora_lab(f"lora_lab_{regime}_r{repeat}", overrides, system="lora_lab", **tags)
            check_same_rows(recipe, lab)
            records += [recipe, lab]
    return records


def check_same_rows(recipe: dict, lab: dict) -> None:
    """Both sides must train and test on the same rows (the recipe reads lora_lab's rows.json)."""
    sizes = {name: (r["train_rows"], r["test_rows"]) for name, r in (("recipe", recipe), ("lora_lab", lab))}
    if sizes["recipe"] != sizes["lora_lab"]:
        raise RuntimeError(f"train/test row counts differ: {sizes}; the recipe must read the rows lora_lab trains on")


def reach_accuracy(runs: Runs, args: argparse.Namespace, data: list[str], target_acc: float) -> list[dict]:
    """lora_lab with its own defaults (LoRA config, lr, schedule) and 1, 2, ... epochs, until one
    reaches target_acc (the rule: bench.summary.time_to_accuracy)."""
    records = []
    for epochs in args.tta_epochs:
        record = runs.lora_lab(
            f"lora_lab_defaults_{epochs}ep",
            [*data, f"trainer.max_epochs={epochs}"],
            system="lora_lab",
            regime="lora",
            epochs=epochs,
        )
        records.append(record)
        if record["test_acc"] >= target_acc:
            break
    return records


def probe(runs: Runs, data: list[str]) -> dict:
    """Logistic regression on frozen mean-pooled embeddings, through lora_lab's few-shot regime
    (all training rows: shots_per_class is null outside --quick). Run first: it takes about a
    minute and fails fast where the regime is missing."""
    if not (REPO / "conf" / "regime" / PROBE_CONFIG).is_file():
        raise SystemExit(
            f"the probe runs lora_lab's regime=fewshot, but conf/regime/{PROBE_CONFIG} is not in this checkout"
        )
    record = runs.lora_lab("probe_fewshot_logreg", [*data, *PROBE_OVERRIDES], gradient=False)
    return {**record, "method": " ".join(PROBE_OVERRIDES)}


def sweep_overhead(runs: Runs, args: argparse.Namespace) -> dict:
    """A 10-job multirun in one process: its wall time against its jobs' training + evaluation."""
    shots = [f"shots_per_class={args.sweep_shots_per_class}"] if args.sweep_shots_per_class else []
    overrides = ["dataset=banking77", *shots, *SWEEP_OVERRIDES]
    record = runs.lora_lab_multirun("sweep_overhead", overrides)
    return {
        "sweep_jobs": record["jobs"],
        "sweep_wall_s": record["wall_s"],
        "sweep_work_s": record["work_s"],
        "sweep_overhead_s": record["overhead_s"],
        "sweep_overhead_share": record["overhead_share"],
        "sweep_overrides": " ".join(overrides),
    }


def best_regime(runs: Runs, data: list[str], skip: bool) -> dict:
    """lora_lab's best regime for this backbone with its own settings, on all training rows."""
    keys = ("best_acc", "best_f1", "best_train_s", "best_wall_s", "best_overrides", "merged_dir")
    if skip:
        return dict.fromkeys(keys)
    r = runs.lora_lab("best_regime", [*data, BEST_EXPERIMENT], system="lora_lab")
    return dict(
        zip(keys, (r["test_acc"], r["test_f1_macro"], r["train_s"], r["wall_s"], BEST_EXPERIMENT, r["merged_dir"]))
    )


def inference(runs: Runs, args: argparse.Namespace, merged_dir: str, rows_path: Path, quantize: str) -> dict:
    """Predictor on merged_dir in a fresh process: batch ex/s and single-text latency."""
    result = runs.worker(
        f"inference_{quantize}",
        "inference",
        {
            "merged_dir": merged_dir,
            "rows_path": str(rows_path),
            "quantize": quantize,
            "batch_size": args.infer_batch_size,
            "latency_texts": args.latency_texts,
            "seed": 0,
        },
    )
    key = infer_prefix(quantize)
    return {
        f"{key}_examples_per_s": result["batch_examples_per_s"],
        f"{key}_acc": result["batch_test_acc"],
        f"{key}_p50_ms": result["latency_p50_ms"],
        f"{key}_p90_ms": result["latency_p90_ms"],
        f"{key}_peak_rss_mb": result["peak_rss_mb"],
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = data_overrides(args)
    check_data(data)
    runs = Runs(args.results_dir)
    print(f"[bench] results in {args.results_dir}", flush=True)
    machine = machine_peak(args.fma_units, args.clock_ghz, args.fp32_lanes)
    (args.results_dir / "machine.json").write_text(json.dumps(machine, indent=2))
    rows_path = args.results_dir / "rows.json"
    shape = EncoderShape.from_config(AutoConfig.from_pretrained(write_rows(data, rows_path)["model_path"]))

    probed = probe(runs, data)
    records = compare(runs, args, data, rows_path)
    summary: dict = comparison(records, shape, machine["peak_flops_nominal"], machine["peak_flops_matmul"])
    tta_records = reach_accuracy(runs, args, data, summary["recipe_lora_acc"])
    summary.update(
        time_to_accuracy(
            tta_records, summary["recipe_lora_acc"], summary["recipe_lora_wall_s"], summary["recipe_lora_train_s"]
        )
    )
    summary.update(sweep_overhead(runs, args))
    best = best_regime(runs, data, args.skip_best)
    summary.update({k: v for k, v in best.items() if k != "merged_dir"})
    # The model a user of lora_lab would ship: the best regime's merged/ (else the last
    # time-to-accuracy job's, with --skip-best).
    merged_dir = best["merged_dir"] or tta_records[-1]["merged_dir"]
    for quantize in ("none", "int8"):
        summary.update(inference(runs, args, merged_dir, rows_path, quantize))
    summary.update(
        {
            "infer_batch_size": args.infer_batch_size,
            "infer_model": merged_dir,
            "probe_method": probed["method"],
            "probe_acc": probed["test_acc"],
            "probe_f1": probed["test_f1_macro"],
            "probe_train_s": probed["train_s"],
            "probe_wall_s": probed["wall_s"],
            "probe_peak_rss_mb": probed["peak_rss_mb"],
            **{
                k: machine[k]
                for k in (
                    "cores",
                    "clock_ghz",
                    "clock_source",
                    "fp32_lanes",
                    "fma_units_assumed",
                    "peak_flops_nominal",
                    "peak_source",
                    "peak_flops_matmul",
                )
            },
            "quick": args.quick,
            "repeats": args.repeats,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "train_rows": records[0]["train_rows"],
            "test_rows": records[0]["test_rows"],
            "results_dir": str(args.results_dir),
        }
    )
    (args.results_dir / "summary.json").write_text(json.dumps(summary, indent=2))

    rows = f"{summary['train_rows']:,} train / {summary['test_rows']:,} test rows"
    print(
        f"\nBanking77 ({rows}), all-MiniLM-L6-v2, {args.epochs} epoch(s), batch {args.batch_size}, "
        f"LoRA r={args.rank} on {'/'.join(args.target_modules)} lr {args.lora_lr:g}, full lr {args.full_lr:g}; "
        f"median of {args.repeats} repeat(s); timings contended when others share the CPUs"
    )
    print(comparison_table(summary))
    best_lines = [] if args.skip_best else [best_line]
    lines = [paired_line, tta_line, inference_line, inference_int8_line, sweep_line, *best_lines, probe_line, peak_line]
    for line in lines:
        print(line(summary))
    print(json_line(summary))


if __name__ == "__main__":
    sys.exit(main())
