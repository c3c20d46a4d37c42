"""The served LoRA forward on the model thread: lora_lab's (models/mixed_lora.py) vs PEFT's, per precision.

    python scripts/bench_lora_forward.py --job <job dir with a pooled LoRA adapter> [--rounds 15]

One engine per precision, one adapter, no TF-IDF stack, warmed as the server warms it (`Engine.warm`)
and then by --warm-rounds untimed rounds: bf16 builds a oneDNN kernel per new shape (rows x width),
which a server running for a while has built; the three ways share the base's shapes, so unwarmed,
whichever runs a shape first would pay for it. Each round draws --batch Banking77 test texts afresh
and times, on every engine in turn, the batch as --batch one-text requests (what the batcher hands
the model at 32 clients) and one text (1 client), each three ways: lora_lab's forward, PEFT's own
(`peft_forward()`), and the base with the adapter off (`disable_adapter()`, what LoRA costs on
top). Medians of rounds, and of per-round ratios (the VM's speed drifts). No HTTP: `make
bench-serve` measures the server.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_mixed_adapters import arguments, engine, texts  # noqa: E402
from bench_mixed_adapters import timed as timed_plain  # noqa: E402

from lora_lab.models.mixed_lora import peft_forward  # noqa: E402
from lora_lab.serve.engine import Engine  # noqa: E402

WAYS = ("lora_lab", "peft", "no adapter")


def timed(e: Engine, requests: list[tuple[str, list[str]]], way: str) -> float:
    peft = e.models["a"].base.peft
    with {"lora_lab": nullcontext(), "peft": peft_forward(), "no adapter": peft.disable_adapter()}[way]:
        return timed_plain(e, requests)


def main() -> None:
    parser = arguments(__doc__, rounds=15)
    parser.add_argument("--warm-rounds", type=int, default=10)
    args = parser.parse_args()
    pool, rng = texts(), random.Random(0)
    torch.set_num_threads(os.cpu_count() or 1)
    engines = {p: engine(args.job, p, adapters=1) for p in args.precisions}
    for e in engines.values():
        e.warm("a")
    ms: dict[tuple[str, str, str], list[float]] = {}  # (precision, way, "batch" | "one") -> per round
    for r in range(-args.warm_rounds, args.rounds):
        batch = rng.sample(pool, args.batch)
        if r < 0:  # untimed
            for e in engines.values():
                for way in WAYS:
                    timed(e, [("a", [t]) for t in batch], way)
            continue
        order = list(engines.items()) if r % 2 == 0 else list(engines.items())[::-1]
        for precision, e in order:
            for way in WAYS if r % 2 == 0 else WAYS[::-1]:
                ms.setdefault((precision, way, "batch"), []).append(timed(e, [("a", [t]) for t in batch], way))
                ms.setdefault((precision, way, "one"), []).append(timed(e, [("a", [batch[0]])], way))
    med = statistics.median
    print(f"{'precision':9} | {'way':10} | {args.batch} texts ms | vs PEFT | 1 text ms | vs PEFT")
    for precision in engines:
        for way in WAYS:
            cells = []
            for size in ("batch", "one"):
                mine, peft = ms[(precision, way, size)], ms[(precision, "peft", size)]
                cells.append(f"{med(mine):12.1f} | x{med(a / b for a, b in zip(mine, peft)):.3f}")
            print(f"{precision:9} | {way:10} | {cells[0]} | {cells[1]}")
    if {"fp32", "bf16"} <= set(engines):
        for size in ("batch", "one"):
            b16, f32 = ms[("bf16", "lora_lab", size)], ms[("fp32", "lora_lab", size)]
            print(f"bf16 / fp32, lora_lab's forward, {size}: x{med(a / b for a, b in zip(b16, f32)):.3f} (per round)")


if __name__ == "__main__":
    main()
