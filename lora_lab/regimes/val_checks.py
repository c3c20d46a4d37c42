"""Model selection inside a training loop that Lightning does not run (regime=contrastive's stage 1).

The gradient regimes test the epoch with the best validation accuracy (ModelCheckpoint) and may
stop when it stalls (EarlyStopping). ValidationChecks does the same for a plain loop: it scores
the model before the first step and at `checks` evenly spaced steps, keeps a copy of the trainable
weights of the best check (the untrained start included) and what its score was computed with
(contrastive: the head fitted on that body, so the job need not fit it again), stops after
`patience` checks in a row without a gain, and puts the best weights back at the end.

Why stage 1 needs it: contrastive training can make the embeddings worse than the pretrained ones.
On Banking77 at 8 shots (77 labels, 616 rows, 1,540 steps of SetFit's recipe) the frozen
all-MiniLM-L6-v2 with a logistic-regression head scored 0.803 / 0.805 / 0.795 test accuracy
(seeds 1-3), and the trained body 0.756 (seed 1; SetFit itself 0.781).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lora_lab.errors import ConfigError, check_positive_int

if TYPE_CHECKING:  # torch loads with the job, not with the config check (check_settings)
    from torch import nn

log = logging.getLogger(__name__)


class ValidationChecks:
    """Scores the model at planned steps and keeps the weights of the best score (strictly better
    than every earlier check, as ModelCheckpoint(mode="max") keeps the first best)."""

    def __init__(
        self,
        params: dict[str, nn.Parameter],
        total_steps: int,
        checks: int,
        patience: int | None,
        score: Callable[[], tuple[float, Any]],
    ):
        """score(): the model's validation accuracy now, and what goes with these weights (kept as
        `best_kept` alongside the best check's weights)."""
        self.params, self.patience, self.score = params, patience, score
        # Evenly spaced, the last at the final step; fewer when there are fewer steps than checks.
        self.steps = sorted({round(total_steps * k / checks) for k in range(1, checks + 1)} - {0})
        self.history: list[tuple[int, float]] = []
        self.best_step, self.best_score, self.best_weights, self.best_kept = 0, float("-inf"), {}, None
        self.stale = 0  # checks since the last gain
        self._check(0)

    def after_step(self, step: int) -> bool:
        """Check if `step` is planned; True when the loop should stop (patience spent)."""
        if step not in self.steps:
            return False
        self._check(step)
        return self.patience is not None and self.stale >= self.patience

    def restore_best(self) -> None:
        """Put the best check's weights back into the model."""
        import torch

        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.best_weights[name])
        log.info(
            "Validation checks %s: kept step %d (val acc %.4f)",
            ", ".join(f"{s}: {a:.4f}" for s, a in self.history),
            self.best_step,
            self.best_score,
        )

    def _check(self, step: int) -> None:
        value, kept = self.score()
        self.history.append((step, value))
        if value > self.best_score:
            self.best_step, self.best_score, self.best_kept, self.stale = step, value, kept, 0
            self.best_weights = {name: p.detach().clone() for name, p in self.params.items()}
        else:
            self.stale += 1
        log.info(
            "Validation check at step %d: val acc %.4f (best %.4f at step %d)",
            step,
            value,
            self.best_score,
            self.best_step,
        )


def check_settings(checks: int, patience: int | None) -> None:
    """Refuse settings that cannot mean anything, with the fix (config.validate_regime calls it
    before any model loads; the regime's constructor again, for regimes built by hand)."""
    if not isinstance(checks, int) or checks < 0:
        raise ConfigError(
            f"regime.val_checks={checks!r}: validation checks during the run, 0 (none: keep the last "
            "weights) or a positive integer, e.g. 10"
        )
    if patience is not None:
        check_positive_int(
            "regime.patience", patience, "checks without a gain before stopping", "or null to never stop early"
        )
