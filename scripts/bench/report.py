"""The printed report: one comparison table, the time-to-accuracy / inference / probe / peak lines,
and the final JSON line (keys listed in REQUIRED_KEYS are always present, null when not measured)."""

from __future__ import annotations

import json
from collections.abc import Callable

from bench.summary import REGIMES, infer_prefix, prefix, ratio

# (header, figure, format); a figure is read as summary[f"{prefix}_{figure}"].
COLUMNS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("ex/s", "examples_per_s", lambda v: f"{v:,.1f}"),
    ("s/epoch", "s_per_epoch", lambda v: f"{v:,.1f}"),
    ("test acc", "acc", lambda v: f"{v:.4f}"),
    ("macro-F1", "f1", lambda v: f"{v:.4f}"),
    ("peak RSS MiB", "peak_rss_mb", lambda v: f"{v:,.0f}"),
    ("GFLOP/s useful", "gflops_real", lambda v: f"{v:.1f}"),
    ("GFLOP/s computed", "gflops_padded", lambda v: f"{v:.1f}"),
    ("% peak useful", "peak_frac", lambda v: f"{100 * v:.1f}%"),
    ("padding", "padding_share", lambda v: f"{100 * v:.0f}%"),
)
REQUIRED_KEYS = (
    "lora_speedup",
    "full_speedup",
    "lora_acc",
    "recipe_lora_acc",
    "full_acc",
    "recipe_full_acc",
    "lora_f1",
    "recipe_lora_f1",
    "full_f1",
    "recipe_full_f1",
    "lora_peak_rss_mb",
    "recipe_lora_peak_rss_mb",
    "lora_memory_ratio",
    "lora_peak_frac",
    "full_peak_frac",
    "peak_flops_nominal",
    "peak_flops_matmul",
    "tta_target_acc",
    "tta_wall_s",
    "tta_ratio",
    "tta_epochs",
    "infer_examples_per_s",
    "infer_p50_ms",
    "infer_int8_examples_per_s",
    "infer_int8_p50_ms",
    "infer_int8_acc",
    "probe_acc",
    "probe_train_s",
    "sweep_jobs",
    "sweep_overhead_share",
    "best_acc",
    "best_train_s",
)


def format_table(header: list[str], rows: list[list[str]], left: int = 2) -> str:
    """Columns padded to their widest cell: the first `left` left-aligned, the rest right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def comparison_table(summary: dict) -> str:
    """regime x (recipe, lora_lab, ratio lora_lab / recipe) by the COLUMNS figures (medians)."""
    header = ["regime", "run", *(name for name, _, _ in COLUMNS)]
    rows = []
    for regime in REGIMES:
        values = {
            system: [summary.get(f"{prefix(system, regime)}_{figure}") for _, figure, _ in COLUMNS]
            for system in ("recipe", "lora_lab")
        }
        for system, cells in values.items():
            rows.append([regime, system, *(fmt(v) if v is not None else "-" for (_, _, fmt), v in zip(COLUMNS, cells))])
        ratios = [ratio(a, b) for a, b in zip(values["lora_lab"], values["recipe"])]
        rows.append([regime, "lora_lab/recipe", *(f"x{r:.2f}" if r is not None else "-" for r in ratios)])
    return format_table(header, rows)


def _target(met: bool) -> str:
    return "met" if met else "NOT met"


def paired_line(s: dict) -> str:
    """The speedup within each repeat's back-to-back pair, beside the table's ratio of medians."""
    parts = []
    for regime in REGIMES:
        by_repeat = s.get(f"{regime}_speedups_by_repeat") or []
        if by_repeat:
            each = ", ".join(f"x{r:.2f}" for r in by_repeat)
            parts.append(
                f"{regime} {each} (median x{s[f'{regime}_speedup_paired']:.2f}, target >= 2.5: "
                f"{_target(s[f'{regime}_speedup_paired'] >= 2.5)})"
            )
    return (
        "speedup within each repeat (recipe and lora_lab back to back, so drift of the machine's speed "
        "between repeats cancels): " + "; ".join(parts)
    )


def tta_line(s: dict) -> str:
    if not s.get("tta_reached"):
        tried = ", ".join(f"{t['epochs']} ep: {t['acc']:.4f}" for t in s.get("tta_tried", []))
        return (
            "time to accuracy: lora_lab defaults did not reach the recipe's LoRA test acc "
            f"{s['tta_target_acc']:.4f} ({tried})"
        )
    return (
        f"time to accuracy: lora_lab defaults reach the recipe's LoRA test acc {s['tta_target_acc']:.4f} after "
        f"{s['tta_epochs']} epoch(s) (acc {s['tta_acc']:.4f}): job wall {s['tta_wall_s']:.0f} s vs the recipe's "
        f"{s['recipe_lora_wall_s']:.0f} s = {100 * s['tta_ratio']:.0f}% "
        f"(target <= 40%: {_target(s['tta_ratio'] <= 0.40)}); "
        f"training loop {s['tta_train_s']:.0f} s vs {s['recipe_lora_train_s']:.0f} s "
        f"= {100 * s['tta_train_ratio']:.0f}%"
    )


def inference_line(s: dict, quantize: str = "none") -> str:
    """The Predictor (traced graph) on the shipped merged/: fp32 (quantize none) or int8."""
    k = infer_prefix(quantize)
    acc = f"acc {s[f'{k}_acc']:.4f}" + (f" vs fp32 {s['infer_acc']:.4f}" if quantize != "none" else "")
    return (
        f"inference, Predictor(quantize={quantize!r}) on {s['infer_model']} in a fresh process: "
        f"{s[f'{k}_examples_per_s']:,.0f} ex/s in length-sorted batches of {s['infer_batch_size']} "
        f"(target >= 400: {_target(s[f'{k}_examples_per_s'] >= 400)}; {acc}); "
        f"single text p50 {s[f'{k}_p50_ms']:.2f} ms, "
        f"p90 {s[f'{k}_p90_ms']:.2f} ms (target p50 <= 5 ms: {_target(s[f'{k}_p50_ms'] <= 5)})"
    )


def inference_int8_line(s: dict) -> str:
    return inference_line(s, "int8")


def sweep_line(s: dict) -> str:
    return (
        f"sweep overhead: a {s['sweep_jobs']}-job multirun in one process ({s['sweep_overrides']}) took "
        f"{s['sweep_wall_s']:.0f} s, of which {s['sweep_overhead_s']:.0f} s = {100 * s['sweep_overhead_share']:.1f}% "
        f"outside training/validation/test (target < 5%: {_target(s['sweep_overhead_share'] < 0.05)}); "
        f"{s['sweep_overhead_s'] / s['sweep_jobs']:.1f} s per job, the process start included"
    )


def best_line(s: dict) -> str:
    return (
        f"best regime ({s['best_overrides']}): test acc {s['best_acc']:.4f}, macro-F1 {s['best_f1']:.4f} "
        f"(target >= 0.9400: {_target(s['best_acc'] >= 0.94)}; probe {s['probe_acc']:.4f}) after "
        f"{s['best_train_s'] / 60:.1f} min of training (target <= 30: {_target(s['best_train_s'] <= 1800)}), "
        f"job wall {s['best_wall_s'] / 60:.1f} min"
    )


def probe_line(s: dict) -> str:
    return (
        f"frozen-embedding probe ({s['probe_method']}): test acc {s['probe_acc']:.4f}, macro-F1 {s['probe_f1']:.4f}, "
        f"train {s['probe_train_s']:.1f} s, job wall {s['probe_wall_s']:.0f} s"
    )


def peak_line(s: dict) -> str:
    source = s.get("peak_source") or "clock from model name"
    if source.startswith("measured"):
        basis = f"= {source}"
    else:
        basis = (
            f"({s['cores']} cores x {s['clock_ghz']} GHz x {s['fp32_lanes']} lanes x 2 (FMA) x "
            f"{s['fma_units_assumed']} FMA units, assumed; {source})"
        )
    peak = s["peak_flops_nominal"] / 1e9
    return (
        f"fp32 peak: {peak:.1f} GFLOP/s {basis}; measured fp32 matmul {s['peak_flops_matmul'] / 1e9:.1f} GFLOP/s. "
        f"'% peak useful' = FLOP/s on real tokens / {peak:.1f} GFLOP/s"
    )


def json_line(summary: dict) -> str:
    """The summary as one JSON line; every REQUIRED_KEYS key must be there (null when not measured)."""
    missing = [k for k in REQUIRED_KEYS if k not in summary]
    if missing:
        raise KeyError(f"summary lacks {missing}: every run kind must have finished (or set them to None)")
    return json.dumps(summary, sort_keys=True, separators=(",", ":"))
