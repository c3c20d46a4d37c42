"""Cost of one EMA update of MiniLM-sized weights (22M fp32): Lightning's per-tensor average vs the
in-place foreach lerp that lora_lab.callbacks.ema.EMA uses. Prints the median ms of 15 updates.

    python scripts/bench_ema.py
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn, get_ema_multi_avg_fn

DECAY, UPDATES = 0.998, 15


def main() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(384, 384) for _ in range(150)])  # 22.2M weights
    averages = {
        "per_tensor": AveragedModel(model, avg_fn=get_ema_avg_fn(DECAY), use_buffers=False),
        "foreach": AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=False),
    }
    for average in averages.values():
        average.update_parameters(model)  # the first update only copies
    seconds: dict[str, list[float]] = {name: [] for name in averages}
    for _ in range(UPDATES):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)  # a "step": the weights move
        for name, average in averages.items():
            start = time.perf_counter()
            average.update_parameters(model)
            seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(s) * 1000 for name, s in seconds.items()}
    print(
        ", ".join(f"{name} {ms:.1f} ms" for name, ms in medians.items()),
        f"(x{medians['per_tensor'] / medians['foreach']:.1f})",
    )


if __name__ == "__main__":
    main()
