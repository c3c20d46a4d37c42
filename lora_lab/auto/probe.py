"""How much a training step costs on each backbone, measured where the search runs.

A portfolio entry's `cost` is a prior relative to the default job, but a backbone's share of it depends
on the CPU: LoRA on MPNet-base costs 5.5x MiniLM-L6 per example on a CPU without bf16 and 2.4x on one
with AMX-BF16 (docs/benchmarks.md), since the matrix units speed up the larger model's matmuls more. A
fixed prior ordered the first rung wrongly on one of them and skipped the best entry. So before the
first rung the search times one training step (forward and backward, the trainer's precision) of each
backbone the portfolio names, side by side, and scales the cost of an entry that sets `backbone=` by
its backbone's ratio to the default job's.

The step is a batch of PROBE_ROWS synthetic rows of PROBE_TOKENS tokens: both figures sit inside
what the jobs train (batch 32, the texts' auto length), and the ratio, not the seconds, is used.
Backbones alternate within each repeat, so a machine that speeds up or slows down meets both; the
median of PROBE_REPEATS steps, after one warm-up step each, is the figure.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Mapping

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)

PROBE_ROWS = 32  # the default data.batch_size
PROBE_TOKENS = 64  # about Financial PhraseBank's and Banking77's auto length; reviews run longer
PROBE_REPEATS = 3


def step_ratios(backbones: Mapping[str, DictConfig], reference: str, precision: str) -> dict[str, float]:
    """Each backbone's training-step seconds over the reference backbone's (which is 1.0).

    backbones: name -> its composed `backbone` config node; precision: the trainer's
    (bf16-mixed runs the step under CPU autocast, as the job does)."""
    torch.manual_seed(0)
    models = {name: instantiate(cfg).build_classifier({0: "a", 1: "b"}) for name, cfg in backbones.items()}
    batches = {name: _batch(model) for name, model in models.items()}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(PROBE_REPEATS + 1):
        for name, model in models.items():
            took = _step(model, *batches[name], bf16=precision.startswith("bf16"))
            if repeat > 0:  # the first step of each warms its kernels up
                seconds[name].append(took)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    ratios = {name: medians[name] / medians[reference] for name in medians}
    log.info(
        "auto: one training step (%d rows x %d tokens, %s): %s",
        PROBE_ROWS,
        PROBE_TOKENS,
        precision,
        ", ".join(f"{n} {medians[n] * 1000:.0f} ms ({ratios[n]:.2f}x)" for n in medians),
    )
    return ratios


def _batch(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    vocab = int(model.transformer.config.vocab_size)
    ids = torch.randint(low=min(1000, vocab - 1), high=vocab, size=(PROBE_ROWS, PROBE_TOKENS))
    return ids, torch.ones_like(ids)


def _step(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, bf16: bool) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(ids, mask).float().square().mean()
    loss.backward()
    return time.perf_counter() - start
