"""Facts about the machine a job runs on, asked without importing torch where possible.

Every fact falls back instead of failing: no /proc/cpuinfo, an unreadable one, or one without a
`flags` line (some ARM kernels, containers) means no native bf16, so fp32, which runs everywhere.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text lists a native bf16 unit (AVX-512 BF16 or AMX) among its flags.
    No `flags` line (or no text at all): False."""
    return any(flag in line.split() for line in cpuinfo.splitlines() if line.startswith("flags") for flag in BF16_FLAGS)


@cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively; emulated bf16 is slower than fp32. No /proc or an
    unreadable one: False."""
    try:
        return native_bf16(Path("/proc/cpuinfo").read_text(errors="replace"))
    except (OSError, ValueError):
        return False


def cpu_precision() -> str:
    """Lightning precision for CPU jobs: bf16 autocast where it pays, fp32 elsewhere."""
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def launches_processes(trainer: DictConfig) -> bool:
    """Whether Lightning starts this trainer's other ranks by re-running the command line: a DDP
    strategy with its default start method (popen) on more than one device (trainer=ddp, ddp_cpu)."""
    strategy = trainer.get("strategy", "auto")
    if OmegaConf.is_dict(strategy):
        name, start = str(strategy.get("_target_", "")).rpartition(".")[2], strategy.get("start_method", "popen")
    else:
        name, start = str(strategy), "popen"
    several = trainer.get("devices", 1) not in (1, "1") or trainer.get("num_nodes", 1) != 1
    return several and start == "popen" and name.lower() in ("ddp", "ddpstrategy")


def cuda_available() -> bool:
    """torch's answer (importing torch takes about a second, so only a GPU trainer asks)."""
    import torch

    return torch.cuda.is_available()
