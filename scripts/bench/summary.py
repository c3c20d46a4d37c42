"""From raw run records to the benchmark's figures: per-run FLOP/s, medians over repeats, ratios,
time to accuracy. Pure functions over the records bench.jobs writes, so they are testable alone.

Flat figure names, as in the final JSON line: lora_lab's figures are `<regime>_<figure>`
(lora_acc, full_examples_per_s), the recipe's `recipe_<regime>_<figure>` (recipe_lora_acc);
`<regime>_speedup` is lora_lab's median examples/s over the recipe's; `<regime>_speedup_paired`
the median of the per-repeat ratios (each repeat runs the two back to back).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from bench.flops import EncoderShape, TokenCount, run_flops

SYSTEMS = ("recipe", "lora_lab")
REGIMES = ("lora", "full")
# Per-run figures, each reported as its median over the repeats.
FIGURES = (
    "examples_per_s",
    "s_per_epoch",
    "acc",
    "f1",
    "peak_rss_mb",
    "gflops_real",
    "gflops_padded",
    "padding_share",
    "train_s",
    "wall_s",
)


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values: no run of this kind finished")
    return float(statistics.median(values))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None where either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def prefix(system: str, regime: str) -> str:
    """'lora' for lora_lab's LoRA figures, 'recipe_lora' for the recipe's."""
    if system not in SYSTEMS or regime not in REGIMES:
        raise ValueError(f"system={system!r}, regime={regime!r}: expected one of {SYSTEMS} x {REGIMES}")
    return regime if system == "lora_lab" else f"recipe_{regime}"


def infer_prefix(quantize: str) -> str:
    """'infer' for the fp32 Predictor's figures, 'infer_int8' for the int8 one's."""
    return "infer" if quantize == "none" else f"infer_{quantize}"


def run_figures(record: dict, shape: EncoderShape) -> dict[str, float]:
    """One run's figures; FLOP/s over its training time (lora_lab's excludes validation)."""
    flops = run_flops(shape, record["regime"], TokenCount.from_dict(record["tokens"]))
    train_s = record["train_s"]
    return {
        "examples_per_s": record["examples_per_s"],
        "s_per_epoch": train_s / record["epochs"],
        "acc": record["test_acc"],
        "f1": record["test_f1_macro"],
        "peak_rss_mb": record["peak_rss_mb"],
        "gflops_real": flops["flops_real"] / train_s / 1e9,
        "gflops_padded": flops["flops_padded"] / train_s / 1e9,
        "padding_share": flops["padding_share"],
        "train_s": train_s,
        "wall_s": record["wall_s"],
    }


def comparison(
    records: Sequence[dict], shape: EncoderShape, peak_nominal: float, peak_matmul: float
) -> dict[str, float | None]:
    """Medians per (system, regime), fractions of peak, and lora_lab / recipe ratios."""
    out: dict[str, float | None] = {}
    for regime in REGIMES:
        for system in SYSTEMS:
            runs = [run_figures(r, shape) for r in records if r["system"] == system and r["regime"] == regime]
            if not runs:
                continue
            p = prefix(system, regime)
            for figure in FIGURES:
                out[f"{p}_{figure}"] = median([run[figure] for run in runs])
            out[f"{p}_repeats"] = len(runs)
            # Useful (real-token) FLOP/s over the peak: model FLOPs utilisation; padded: what the CPU did.
            out[f"{p}_peak_frac"] = out[f"{p}_gflops_real"] * 1e9 / peak_nominal
            out[f"{p}_peak_frac_padded"] = out[f"{p}_gflops_padded"] * 1e9 / peak_nominal
            out[f"{p}_matmul_frac"] = out[f"{p}_gflops_real"] * 1e9 / peak_matmul
        if f"{regime}_examples_per_s" in out and f"recipe_{regime}_examples_per_s" in out:
            for figure in FIGURES:
                out[f"{regime}_{figure}_ratio"] = ratio(out[f"{regime}_{figure}"], out[f"recipe_{regime}_{figure}"])
            out[f"{regime}_speedup"] = out[f"{regime}_examples_per_s_ratio"]
            out[f"{regime}_memory_ratio"] = out[f"{regime}_peak_rss_mb_ratio"]
            by_repeat = paired_speedups(records, regime)
            out[f"{regime}_speedups_by_repeat"] = by_repeat
            out[f"{regime}_speedup_paired"] = median(by_repeat) if by_repeat else None
    return out


def paired_speedups(records: Sequence[dict], regime: str) -> list[float]:
    """lora_lab / recipe examples/s within each repeat, in repeat order.

    A repeat's two runs go back to back, so a drift of the machine's speed between repeats cancels
    within a pair but not in the ratio of the two medians: on 2026-11-24 the same recipe run took
    50.1, 60.9 and 66.4 ex/s in three repeats within 80 minutes, on identical code and rows.
    """
    pairs: dict[int, dict[str, float]] = {}
    for r in records:
        if r["regime"] == regime:
            pairs.setdefault(r["repeat"], {})[r["system"]] = r["examples_per_s"]
    return [p["lora_lab"] / p["recipe"] for _, p in sorted(pairs.items()) if set(p) == set(SYSTEMS)]


def first_reaching(records: Sequence[dict], target_acc: float) -> dict | None:
    """The first lora_lab job (in the order tried: fewer epochs first) with test acc >= target."""
    return next((r for r in records if r["test_acc"] >= target_acc), None)


def time_to_accuracy(
    tta_records: Sequence[dict], target_acc: float, recipe_wall_s: float, recipe_train_s: float
) -> dict:
    """The rule: lora_lab jobs with its own defaults and 1, 2, ... epochs are tried in order; the
    time to accuracy is the whole-job wall time (process start to exit: load, train, validate,
    test, save) of the first whose test accuracy >= the recipe's median LoRA test accuracy,
    against the recipe job's median wall time. Training-loop times are given too; the jobs
    tried before it are not charged (their total is tta_search_wall_s)."""
    reached = first_reaching(tta_records, target_acc)
    tried = tta_records if reached is None else tta_records[: tta_records.index(reached) + 1]
    return {
        "tta_target_acc": target_acc,
        "tta_reached": reached is not None,
        "tta_epochs": reached["epochs"] if reached else None,
        "tta_acc": reached["test_acc"] if reached else None,
        "tta_wall_s": reached["wall_s"] if reached else None,
        "tta_train_s": reached["train_s"] if reached else None,
        "tta_ratio": ratio(reached["wall_s"], recipe_wall_s) if reached else None,
        "tta_train_ratio": ratio(reached["train_s"], recipe_train_s) if reached else None,
        "tta_search_wall_s": sum(r["wall_s"] for r in tried),
        "tta_tried": [{"epochs": r["epochs"], "acc": r["test_acc"], "wall_s": r["wall_s"]} for r in tta_records],
    }
