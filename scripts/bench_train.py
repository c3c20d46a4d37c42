"""Benchmark lora_lab against the plain transformers.Trainer + PEFT recipe a user would write.

Same backbone (embedded all-MiniLM-L6-v2), rows (Banking77 through lora_lab's own split),
epochs, batch size, learning rate and LoRA rank / target modules; each run in its own
subprocess, recipe and lora_lab alternating, for LoRA and full fine-tuning, `--repeats` times.
Then: lora_lab with its own defaults until it reaches the recipe's LoRA test accuracy (time to
accuracy), inference with its merged/ model, and a frozen-embedding logistic-regression probe.
Prints one table (medians over repeats) and ends with one JSON line; every run's raw result is
written under --results-dir as it finishes.

    make bench        # Banking77 (about 9,000 training rows, 3,080 test), 3 epochs, 3 repeats
    make bench-quick  # smoke check: 13 rows per label (1,001 rows), 1 epoch, 1 repeat

Expected duration on an idle 2-core machine (an estimate from the recipe's ~50 examples/s and
the FLOP counts, not a measurement): per repeat recipe LoRA ~10 min, recipe full ~15 min,
lora_lab LoRA ~5 min, lora_lab full ~7 min; x 3 repeats plus time to accuracy (~10 min), probe
and inference (~3 min): about 2 hours. --quick: about 5-10 minutes idle (it took 63 minutes
with ~15 other processes on the 2 cores).

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
from bench.report import comparison_table, inference_line, json_line, peak_line, probe_line, tta_line
from bench.summary import comparison, time_to_accuracy

# --quick: 13 seeded rows per label (77 x 13 = 1,001 training rows, lora_lab's shots_per_class,
# which the recipe reads through lora_lab's DataModule too), 1 epoch, 1 repeat. Validation and test stay whole.
MODES = {
    "full": {"repeats": 3, "epochs": 3, "tta_epochs": "1,2,3", "shots_per_class": None},
    "quick": {"repeats": 1, "epochs": 1, "tta_epochs": "1", "shots_per_class": 13},
}


PROBE_CONFIG = "fewshot.yaml"
PROBE_OVERRIDES = ["regime=fewshot", "regime.method=logistic_regression"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke check: 1,001 training rows, 1 epoch, 1 repeat")
    p.add_argument("--repeats", type=int, help="recipe/lora_lab pairs per regime (full: 3, quick: 1)")
    p.add_argument("--epochs", type=int, help="epochs of the comparison runs (full: 3, quick: 1)")
    p.add_argument("--tta-epochs", help="epochs tried in order for time to accuracy, e.g. 1,2,3 (full: 1,2,3, quick: 1)")
    p.add_argument("--shots-per-class", type=int, help="training rows per label (full: all, quick: 13)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lora-lr", type=float, default=1e-3, help="learning rate of both LoRA runs")
    p.add_argument("--full-lr", type=float, default=1e-4, help="learning rate of both full fine-tunes (lora_lab's default)")
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
                "regime": regime, "epochs": args.epochs, "learning_rate": lr, "batch_size": args.batch_size,
                "rank": args.rank, "target_modules": args.target_modules, "rows_path": str(rows_path),
            }
            recipe = runs.worker(f"recipe_{regime}_r{repeat}", "recipe", spec, system="recipe", **tags)
            overrides = [*data, f"regime={regime}", f"regime.learning_rate={lr}",
                         f"trainer.max_epochs={args.epochs}", f"data.batch_size={args.batch_size}"]
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
        record = runs.lora_lab(f"lora_lab_defaults_{epochs}ep", [*data, f"trainer.max_epochs={epochs}"],
                               system="lora_lab", regime="lora", epochs=epochs)
        records.append(record)
        if record["test_acc"] >= target_acc:
            break
    return records


def probe(runs: Runs, data: list[str]) -> dict:
    """Logistic regression on frozen mean-pooled embeddings, through lora_lab's few-shot regime
    (all training rows: shots_per_class is null outside --quick). Run first: it takes about a
    minute and fails fast where the regime is missing."""
    if not (REPO / "conf" / "regime" / PROBE_CONFIG).is_file():
        raise SystemExit(f"the probe runs lora_lab's regime=fewshot, but conf/regime/{PROBE_CONFIG} is not in this checkout")
    record = runs.lora_lab("probe_fewshot_logreg", [*data, *PROBE_OVERRIDES], gradient=False)
    return {**record, "method": " ".join(PROBE_OVERRIDES)}


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
    summary.update(time_to_accuracy(tta_records, summary["recipe_lora_acc"], summary["recipe_lora_wall_s"], summary["recipe_lora_train_s"]))
    # The merged/ of the last lora_lab-defaults job: the model a user of lora_lab would ship.
    infer = runs.worker("inference", "inference", {
        "merged_dir": tta_records[-1]["merged_dir"], "rows_path": str(rows_path),
        "batch_size": args.infer_batch_size, "latency_texts": args.latency_texts, "seed": 0,
    })
    summary.update({
        "infer_examples_per_s": infer["batch_examples_per_s"], "infer_batch_size": infer["batch_size"],
        "infer_acc": infer["batch_test_acc"], "infer_p50_ms": infer["latency_p50_ms"], "infer_p90_ms": infer["latency_p90_ms"],
        "infer_peak_rss_mb": infer["peak_rss_mb"], "infer_model": infer["merged_dir"],
        "probe_method": probed["method"], "probe_acc": probed["test_acc"], "probe_f1": probed["test_f1_macro"],
        "probe_train_s": probed["train_s"], "probe_wall_s": probed["wall_s"], "probe_peak_rss_mb": probed["peak_rss_mb"],
        **{k: machine[k] for k in ("cores", "clock_ghz", "fp32_lanes", "fma_units_assumed", "peak_flops_nominal", "peak_flops_matmul")},
        "quick": args.quick, "repeats": args.repeats, "epochs": args.epochs, "batch_size": args.batch_size,
        "train_rows": records[0]["train_rows"], "test_rows": records[0]["test_rows"],
        "results_dir": str(args.results_dir),
    })
    (args.results_dir / "summary.json").write_text(json.dumps(summary, indent=2))

    rows = f"{summary['train_rows']:,} train / {summary['test_rows']:,} test rows"
    print(f"\nBanking77 ({rows}), all-MiniLM-L6-v2, {args.epochs} epoch(s), batch {args.batch_size}, "
          f"LoRA r={args.rank} on {'/'.join(args.target_modules)} lr {args.lora_lr:g}, full lr {args.full_lr:g}; "
          f"median of {args.repeats} repeat(s); timings contended when others share the CPUs")
    print(comparison_table(summary))
    for line in (tta_line, inference_line, probe_line, peak_line):
        print(line(summary))
    print(json_line(summary))


if __name__ == "__main__":
    sys.exit(main())
