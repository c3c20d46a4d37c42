"""Peak fp32 FLOP/s of this CPU: nominal (cores x clock x FLOPs/cycle) and measured (a big matmul).

Nominal FLOPs per cycle per core for fp32 = SIMD lanes x 2 (a fused multiply-add is 2 FLOPs)
x FMA units. AVX-512: 16 fp32 lanes; AVX2: 8. Ice Lake server (Xeon Gold/Platinum) cores have
2 AVX-512 FMA units, some Silver/Bronze SKUs 1: a VM hides the SKU, so it is an assumption
(`--fma-units`). 2 cores x 2.8 GHz x 16 x 2 x 2 = 358.4 GFLOP/s. Two further caveats the
nominal figure ignores: heavy AVX-512 code runs below the base clock, and a cloud "core" may
be a hyper-thread sharing one physical core's FMA units with its sibling. The measured matmul
shows what torch reaches here (contended when others share the CPUs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import torch


class MachineError(RuntimeError):
    """A CPU fact the peak needs could not be read; the message says which flag sets it."""


def cpu_facts(cpuinfo: str | None = None) -> dict[str, object]:
    """Model name, base clock (GHz) and where it was read, fp32 SIMD lanes, cores.

    The clock comes from the model name's '@ 2.80GHz' where it has one; many cloud CPUs name
    none ('AMD EPYC'), and then from /proc/cpuinfo's 'cpu MHz' (the clock the hypervisor reports)
    or lscpu's 'CPU max MHz'. None when nothing says it: machine_peak() then uses the measured peak.
    """
    text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    flag_set = set(flags.group(1).split()) if flags else set()
    if "avx512f" in flag_set:
        lanes = 16  # 512-bit registers / 32-bit floats
    elif "avx2" in flag_set and "fma" in flag_set:
        lanes = 8
    else:
        lanes = 0
    clock, source = _clock_ghz(model.group(1) if model else "", text, lscpu=cpuinfo is None)
    return {
        "model_name": model.group(1).strip() if model else None,
        "clock_ghz": clock,
        "clock_source": source,
        "fp32_lanes": lanes,
        "fma": "fma" in flag_set,
        "cores": len(os.sched_getaffinity(0)),
    }


def _clock_ghz(model_name: str, cpuinfo: str, lscpu: bool) -> tuple[float | None, str]:
    """(GHz, where it was read), first source that says it; (None, "none") if none does."""
    if match := re.search(r"@\s*([0-9.]+)\s*GHz", model_name):
        return float(match.group(1)), "model name"
    if match := re.search(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, re.MULTILINE):
        return round(float(match.group(1)) / 1000, 3), "/proc/cpuinfo cpu MHz"
    if lscpu and shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        if match := re.search(r"^CPU max MHz:\s*([0-9.]+)", out, re.MULTILINE):
            return round(float(match.group(1)) / 1000, 3), "lscpu CPU max MHz"
    return None, "none"


def nominal_peak_flops(cores: int, clock_ghz: float, lanes: int, fma_units: int) -> float:
    """cores x clock x lanes x 2 (FMA) x FMA units, in FLOP/s."""
    if min(cores, clock_ghz, lanes, fma_units) <= 0:
        raise MachineError(
            f"cores={cores}, clock={clock_ghz} GHz, lanes={lanes}, fma_units={fma_units}: each must be positive; "
            "pass --clock-ghz / --fp32-lanes where /proc/cpuinfo does not tell"
        )
    return cores * clock_ghz * 1e9 * lanes * 2 * fma_units


def measured_matmul_flops(n: int = 2048, seconds: float = 2.0) -> float:
    """Best fp32 FLOP/s of repeated n x n matmuls (2 n^3 FLOPs each) over about `seconds`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool and caches
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def machine_peak(fma_units: int, clock_ghz: float | None = None, lanes: int | None = None) -> dict[str, object]:
    """The CPU facts, the nominal peak under the stated assumptions, and the measured matmul peak.

    With no clock anywhere (and no --clock-ghz), or no known SIMD width, the nominal peak is the
    measured one: '% peak' then reads against what torch reaches here; `peak_source` says which.
    """
    facts = cpu_facts()
    clock = clock_ghz if clock_ghz is not None else facts["clock_ghz"]
    source = "--clock-ghz" if clock_ghz is not None else facts["clock_source"]
    lanes = lanes if lanes is not None else facts["fp32_lanes"]
    measured = measured_matmul_flops()
    nominal = nominal_peak_flops(facts["cores"], clock, lanes, fma_units) if clock and lanes else None
    nominal, peak_source = choose_peak(nominal, measured, source)
    return {
        **facts,
        "clock_ghz": clock,
        "clock_source": source,
        "fp32_lanes": lanes,
        "fma_units_assumed": fma_units,
        "torch_threads": torch.get_num_threads(),
        "peak_flops_nominal": nominal,
        "peak_source": peak_source,
        "peak_flops_matmul": measured,
    }


def choose_peak(nominal: float | None, measured: float, clock_source: str) -> tuple[float, str]:
    """The peak '% peak' reads against, and why. The nominal one when it is known and no lower than
    what a matmul reaches; otherwise the measured one. A matmul above the nominal peak means the
    clock read is below the one the cores run at: a VM's `cpu MHz` is the base clock, and an AMD
    EPYC boosts above it (this machine: 2 cores x 2.445 GHz x 8 lanes x 2 x 2 = 156.5 GFLOP/s
    nominal, 189 GFLOP/s measured); a nominal peak below it would report more than 100%."""
    if nominal is None:
        return measured, "measured matmul (no clock or SIMD width known: pass --clock-ghz / --fp32-lanes)"
    if measured > nominal:
        return measured, (
            f"measured matmul: above the {nominal / 1e9:.1f} GFLOP/s nominal from {clock_source}, "
            "whose clock is below the one the cores run at (pass --clock-ghz)"
        )
    return nominal, f"clock from {clock_source}"
