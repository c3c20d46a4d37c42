"""scripts/bench_train.py's pure parts: FLOP formula, token counts, peak, medians/ratios, table, JSON line.

No training here: records are made up with the shape bench.jobs writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench.flops import EncoderShape, TokenCount, run_flops, train_flops
from bench.jobs import RunError, multirun_figures
from bench.machine import MachineError, choose_peak, cpu_facts, nominal_peak_flops
from bench.report import (
    REQUIRED_KEYS,
    best_line,
    comparison_table,
    format_table,
    inference_int8_line,
    inference_line,
    json_line,
    paired_line,
    peak_line,
    sweep_line,
)
from bench.summary import comparison, first_reaching, median, paired_speedups, prefix, ratio, time_to_accuracy

MINILM = EncoderShape(layers=6, hidden=384, intermediate=1536)


def test_matmul_params_of_minilm():
    # 6 x (4 x 384^2 + 2 x 384 x 1536) = 6 x (589,824 + 1,179,648)
    assert MINILM.matmul_params == 10_616_832


def test_train_flops_dense_and_attention_terms():
    n = MINILM.matmul_params
    # One row of 10 tokens: T = 10, S = 10 x 10 = 100; attention 12 x 6 layers x 384 x 100.
    attention = 12 * 6 * 384 * 100
    assert train_flops(MINILM, "full", 10, 100) == 6 * n * 10 + attention
    assert train_flops(MINILM, "lora", 10, 100) == 4 * n * 10 + attention
    with pytest.raises(ValueError, match="regime='dora'"):
        train_flops(MINILM, "dora", 10, 100)


def test_token_count_separates_padding_from_real_tokens():
    count = TokenCount()
    count.add(torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]))  # 2 rows padded to 4; real lengths 4 and 2
    count.add(torch.tensor([[1, 1, 1]]))
    assert (count.batches, count.examples) == (2, 3)
    assert (count.padded, count.padded_sq) == (2 * 4 + 3, 2 * 16 + 9)
    assert (count.real, count.real_sq) == (4 + 2 + 3, 16 + 4 + 9)
    assert count.padding_share == pytest.approx(1 - 9 / 11)
    assert TokenCount.from_dict(json.loads(json.dumps(count.to_dict()))) == count
    flops = run_flops(MINILM, "lora", count)
    assert flops["flops_padded"] > flops["flops_real"] > 0
    with pytest.raises(ValueError, match="expected \\(batch, width\\)"):
        count.add(torch.ones(4))


def test_nominal_peak_and_cpu_facts():
    # 2 cores x 2.8 GHz x 16 lanes x 2 (FMA) x 2 units
    assert nominal_peak_flops(2, 2.8, 16, 2) == pytest.approx(358.4e9)
    with pytest.raises(MachineError, match="--clock-ghz"):
        nominal_peak_flops(2, 0.0, 16, 2)
    facts = cpu_facts("model name\t: Intel(R) Xeon(R) Processor @ 2.80GHz\nflags\t\t: fpu avx2 fma avx512f\n")
    assert (facts["clock_ghz"], facts["fp32_lanes"], facts["fma"]) == (2.8, 16, True)
    assert cpu_facts("model name\t: Some CPU\nflags\t\t: avx2 fma\n")["fp32_lanes"] == 8
    assert (facts["clock_source"]) == "model name"


def test_a_cpu_name_without_a_clock_falls_back_to_cpu_mhz_then_to_the_measured_peak():
    # Cloud CPUs such as 'AMD EPYC' name no clock: the hypervisor's cpu MHz line says it.
    epyc = "model name\t: AMD EPYC\ncpu MHz\t\t: 2596.118\nflags\t\t: fpu avx2 fma avx512f\n"
    facts = cpu_facts(epyc)
    assert (facts["clock_ghz"], facts["clock_source"], facts["fp32_lanes"]) == (2.596, "/proc/cpuinfo cpu MHz", 16)
    bare = cpu_facts("model name\t: AMD EPYC\nflags\t\t: avx2 fma\n")  # given text: lscpu is not asked
    assert (bare["clock_ghz"], bare["clock_source"]) == (None, "none")
    line = peak_line(
        {
            "peak_flops_nominal": 300e9,
            "peak_flops_matmul": 300e9,
            "peak_source": "measured matmul (no clock)",
            "cores": 2,
            "clock_ghz": None,
            "fp32_lanes": 8,
            "fma_units_assumed": 2,
        }
    )
    assert "fp32 peak: 300.0 GFLOP/s = measured matmul (no clock)" in line and "None GHz" not in line


def test_the_peak_is_the_measured_one_when_no_clock_is_known_or_a_matmul_beats_the_nominal():
    assert choose_peak(358.4e9, 180.2e9, "model name") == (358.4e9, "clock from model name")
    # A VM's cpu MHz is the base clock: 2 x 2.445 GHz x 8 x 2 x 2 = 156.5 GFLOP/s, and a matmul reached 189.
    peak, source = choose_peak(nominal_peak_flops(2, 2.445, 8, 2), 189.3e9, "/proc/cpuinfo cpu MHz")
    assert (
        peak == 189.3e9
        and source.startswith("measured")
        and "156.5 GFLOP/s nominal from /proc/cpuinfo cpu MHz" in source
    )
    assert "fp32 peak: 189.3 GFLOP/s = measured matmul: above the 156.5" in peak_line(
        {"peak_flops_nominal": peak, "peak_flops_matmul": 189.3e9, "peak_source": source}
    )
    peak, source = choose_peak(None, 150e9, "none")
    assert peak == 150e9 and "no clock or SIMD width known" in source


def test_median_ratio_and_prefix():
    assert median([3.0, 1.0, 2.0]) == 2.0
    with pytest.raises(ValueError, match="no run"):
        median([])
    assert ratio(3.0, 2.0) == 1.5 and ratio(1.0, 0.0) is None and ratio(None, 2.0) is None
    assert prefix("lora_lab", "lora") == "lora" and prefix("recipe", "full") == "recipe_full"
    with pytest.raises(ValueError):
        prefix("other", "lora")


def _record(system: str, regime: str, examples_per_s: float, acc: float, repeat: int = 1) -> dict:
    """A run record as bench.jobs writes it: 2 epochs of 100 rows, 10 real tokens each, padded to 16."""
    examples = 200
    return {
        "system": system,
        "regime": regime,
        "repeat": repeat,
        "epochs": 2,
        "test_acc": acc,
        "test_f1_macro": acc - 0.01,
        "train_s": examples / examples_per_s,
        "examples_per_s": examples_per_s,
        "peak_rss_mb": 1000.0 if system == "recipe" else 800.0,
        "wall_s": 60.0,
        "tokens": {
            "batches": 7,
            "examples": examples,
            "padded": examples * 16,
            "padded_sq": examples * 256,
            "real": examples * 10,
            "real_sq": examples * 100,
        },
    }


def _records() -> list[dict]:
    return [
        _record("recipe", "lora", 50.0, 0.74, 1),
        _record("lora_lab", "lora", 150.0, 0.90, 1),
        _record("recipe", "lora", 40.0, 0.75, 2),
        _record("lora_lab", "lora", 160.0, 0.91, 2),
        _record("recipe", "lora", 60.0, 0.73, 3),
        _record("lora_lab", "lora", 140.0, 0.92, 3),
        _record("recipe", "full", 30.0, 0.85),
        _record("lora_lab", "full", 60.0, 0.93),
    ]


def test_comparison_medians_ratios_and_peak_fractions():
    s = comparison(_records(), MINILM, peak_nominal=358.4e9, peak_matmul=200e9)
    assert s["recipe_lora_examples_per_s"] == 50.0 and s["lora_examples_per_s"] == 150.0
    assert s["lora_speedup"] == pytest.approx(3.0) and s["full_speedup"] == pytest.approx(2.0)
    assert (s["lora_acc"], s["recipe_lora_acc"], s["lora_repeats"]) == (0.91, 0.74, 3)
    assert s["lora_memory_ratio"] == pytest.approx(0.8)
    assert s["lora_s_per_epoch"] == pytest.approx(200 / 150 / 2)
    # Useful FLOP/s: 200 examples x (4N x 10 tokens + 12 x 6 x 384 x 100) over 200/150 s.
    useful = 200 * (4 * MINILM.matmul_params * 10 + 12 * 6 * 384 * 100) / (200 / 150)
    assert s["lora_gflops_real"] == pytest.approx(useful / 1e9)
    assert s["lora_peak_frac"] == pytest.approx(useful / 358.4e9)
    assert s["lora_padding_share"] == pytest.approx(1 - 10 / 16)


def test_paired_speedup_is_the_median_of_each_repeats_ratio():
    # The machine drifts faster in repeat 2 and lora_lab's run of repeat 3 is slow: the ratio of
    # the medians (150 / 60 = 2.5) mixes repeats; the pairs give 3.0, 3.0, 2.0 -> median 3.0.
    records = [
        _record("recipe", "lora", 50.0, 0.74, 1),
        _record("lora_lab", "lora", 150.0, 0.90, 1),
        _record("recipe", "lora", 60.0, 0.74, 2),
        _record("lora_lab", "lora", 180.0, 0.90, 2),
        _record("recipe", "lora", 70.0, 0.74, 3),
        _record("lora_lab", "lora", 140.0, 0.90, 3),
        _record("recipe", "full", 30.0, 0.85),
        _record("lora_lab", "full", 60.0, 0.93),
    ]
    assert paired_speedups(records, "lora") == pytest.approx([3.0, 3.0, 2.0])
    # A repeat whose lora_lab run is missing pairs with nothing.
    assert paired_speedups([*records, _record("recipe", "lora", 10.0, 0.74, 4)], "lora") == pytest.approx(
        [3.0, 3.0, 2.0]
    )
    s = comparison(records, MINILM, 358.4e9, 200e9)
    assert s["lora_speedup"] == pytest.approx(2.5)
    assert s["lora_speedup_paired"] == pytest.approx(3.0) and s["full_speedup_paired"] == pytest.approx(2.0)
    line = paired_line(s)
    assert "lora x3.00, x3.00, x2.00 (median x3.00, target >= 2.5: met)" in line
    assert "full x2.00 (median x2.00, target >= 2.5: NOT met)" in line


def test_time_to_accuracy_takes_the_first_job_that_reaches_the_target():
    tried = [
        {"epochs": 1, "test_acc": 0.70, "wall_s": 50.0, "train_s": 40.0},
        {"epochs": 2, "test_acc": 0.80, "wall_s": 90.0, "train_s": 80.0},
    ]
    assert first_reaching(tried, 0.74) is tried[1]
    out = time_to_accuracy(tried, 0.74, recipe_wall_s=600.0, recipe_train_s=500.0)
    assert (out["tta_reached"], out["tta_epochs"], out["tta_wall_s"]) == (True, 2, 90.0)
    assert out["tta_ratio"] == pytest.approx(0.15) and out["tta_train_ratio"] == pytest.approx(0.16)
    assert out["tta_search_wall_s"] == 140.0
    missed = time_to_accuracy(tried, 0.95, 600.0, 500.0)
    assert missed["tta_reached"] is False and missed["tta_ratio"] is None and missed["tta_search_wall_s"] == 140.0


def test_format_table_aligns_columns():
    text = format_table(["name", "kind", "value"], [["a", "x", "1.0"], ["long name", "y", "123.45"]])
    lines = text.splitlines()
    assert lines[0] == "name       kind   value"
    assert lines[2] == "a          x        1.0"
    assert lines[3] == "long name  y     123.45"
    assert len({len(line) for line in lines}) == 1


def test_comparison_table_has_a_ratio_row_per_regime():
    s = comparison(_records(), MINILM, 358.4e9, 200e9)
    table = comparison_table(s)
    ratio_rows = [line for line in table.splitlines() if "lora_lab/recipe" in line]
    assert len(ratio_rows) == 2
    assert ratio_rows[0].split()[2] == "x3.00"  # examples/s, lora
    assert ratio_rows[1].split()[2] == "x2.00"  # examples/s, full


def test_json_line_is_one_line_with_the_required_keys():
    summary = {key: None for key in REQUIRED_KEYS} | {"lora_speedup": 3.0}
    line = json_line(summary)
    assert "\n" not in line and json.loads(line)["lora_speedup"] == 3.0
    for key in (
        "lora_speedup",
        "full_speedup",
        "lora_acc",
        "recipe_lora_acc",
        "full_acc",
        "recipe_full_acc",
        "tta_ratio",
        "infer_examples_per_s",
        "infer_p50_ms",
        "lora_peak_frac",
        "probe_acc",
    ):
        assert key in REQUIRED_KEYS
    with pytest.raises(KeyError, match="lora_speedup"):
        json_line({k: v for k, v in summary.items() if k != "lora_speedup"})


def test_multirun_overhead_is_wall_time_minus_each_jobs_prepare_fit_and_test(tmp_path: Path):
    jobs = [  # a gradient job, and an embedding job (no fit, a prepare phase)
        {"time/prepare_s": 0.0, "time/fit_s": 40.0, "time/test_s": 8.0, "test/acc": 0.81},
        {"time/prepare_s": 5.0, "time/test_s": 7.0, "test/acc": 0.77},
    ]
    for i, metrics in enumerate(jobs):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "2").mkdir()  # a job that never finished: no metrics.json, no work counted
    figures = multirun_figures(tmp_path, wall_s=100.0)
    assert figures["jobs"] == 2 and figures["work_s"] == 60.0 and figures["job_work_s"] == [48.0, 12.0]
    assert figures["overhead_s"] == 40.0 and figures["overhead_share"] == 0.4 and figures["test_acc"] == 0.81
    with pytest.raises(RunError, match="finished no job"):
        multirun_figures(tmp_path / "2", wall_s=1.0)


def test_sweep_and_best_lines_state_the_targets():
    s = {
        "sweep_jobs": 10,
        "sweep_overrides": "rank=4,8",
        "sweep_wall_s": 400.0,
        "sweep_overhead_s": 16.0,
        "sweep_overhead_share": 0.04,
        "best_overrides": "experiment=x",
        "best_acc": 0.9391,
        "best_f1": 0.94,
        "probe_acc": 0.9269,
        "best_train_s": 1500.0,
        "best_wall_s": 1600.0,
    }
    assert "4.0% outside training/validation/test (target < 5%: met); 1.6 s per job" in sweep_line(s)
    assert "target >= 0.9400: NOT met" in best_line(s) and "25.0 min of training (target <= 30: met)" in best_line(s)


def test_inference_lines_read_their_own_figures():
    s = {
        "infer_model": "m/merged",
        "infer_batch_size": 128,
        "infer_examples_per_s": 390.0,
        "infer_acc": 0.93,
        "infer_p50_ms": 9.5,
        "infer_p90_ms": 12.0,
        "infer_int8_examples_per_s": 610.0,
        "infer_int8_acc": 0.925,
        "infer_int8_p50_ms": 2.9,
        "infer_int8_p90_ms": 3.5,
    }
    fp32, int8 = inference_line(s), inference_int8_line(s)
    assert "390 ex/s" in fp32 and "target >= 400: NOT met" in fp32 and "target p50 <= 5 ms: NOT met" in fp32
    assert "610 ex/s" in int8 and "acc 0.9250 vs fp32 0.9300" in int8 and "target p50 <= 5 ms: met" in int8
