"""The contrastive objectives of regime=contrastive (SetFit's stage 1, Tunstall et al., 2022):
how each samples its training examples from the labelled rows, and its loss on a batch of them.

An example is a tuple of training-row indices (a pair or a triplet); the loop embeds every row
of a batch of examples in one forward pass and hands the loss (batch, rows per example, hidden)
embeddings with the rows' label ids. Sampling draws from a seeded `random.Random` only.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from lora_lab.errors import ConfigError

Example = tuple[int, ...]


class Objective(ABC):
    rows_per_example: ClassVar[int]

    @abstractmethod
    def examples_of(self, row: int, sampler: PairSampler) -> list[Example]:
        """The examples one training row anchors in one iteration."""

    @abstractmethod
    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch: embeddings (batch, rows_per_example, hidden), labels (batch, rows_per_example)."""

    def examples(self, labels: Sequence[int], num_iterations: int, rng: random.Random) -> list[Example]:
        """num_iterations rounds over every training row (SetFit's R), each row anchoring its examples."""
        sampler = PairSampler(labels, rng)
        return [
            ex for _ in range(num_iterations) for row in range(len(labels)) for ex in self.examples_of(row, sampler)
        ]


class PairSampler:
    """Draws, for a row, another row of its label (positive) or of any other label (negative)."""

    def __init__(self, labels: Sequence[int], rng: random.Random):
        self.labels, self.rng = list(labels), rng
        self.rows_of: dict[int, list[int]] = {}
        self.position: list[int] = []  # each row's index within rows_of[its label]
        for row, label in enumerate(self.labels):
            self.position.append(len(self.rows_of.setdefault(label, [])))
            self.rows_of[label].append(row)
        single = sorted(label for label, rows in self.rows_of.items() if len(rows) < 2)
        if single:
            raise ConfigError(
                f"regime=contrastive builds positive pairs within a label, but label id(s) {single} have a single "
                "training row; use shots_per_class >= 2 (or add rows), or regime=fewshot for one-shot data"
            )
        if len(self.rows_of) < 2:
            raise ConfigError("regime=contrastive needs at least two labels to draw negative pairs from")

    def positive(self, row: int) -> int:
        """A different row with the same label (uniform)."""
        rows = self.rows_of[self.labels[row]]
        other = self.rng.randrange(len(rows) - 1)
        # Skip the anchor itself: draw among the len - 1 others, stepping over its position.
        return rows[other + (other >= self.position[row])]

    def negative(self, row: int) -> int:
        """A row with a different label, uniform over all such rows (as SetFit draws them)."""
        while True:
            other = self.rng.randrange(len(self.labels))
            if self.labels[other] != self.labels[row]:
                return other


class CosinePairs(Objective):
    """SetFit's CosineSimilarityLoss: (cos(u, v) - target)^2, target 1 for a same-label pair, 0
    otherwise; each row anchors one positive and one negative pair per iteration."""

    rows_per_example = 2

    def examples_of(self, row: int, sampler: PairSampler) -> list[Example]:
        return [(row, sampler.positive(row)), (row, sampler.negative(row))]

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.cosine_similarity(embeddings[:, 0], embeddings[:, 1], dim=-1)
        return F.mse_loss(cosine, (labels[:, 0] == labels[:, 1]).float())


class SupervisedInfoNCE(Objective):
    """In-batch supervised contrastive loss (SupCon, Khosla et al., 2020): each row anchors one
    positive pair; in a batch of B pairs, every one of the 2B texts is pulled towards the others of
    its label and pushed from the rest, through a softmax over cosine / temperature."""

    rows_per_example = 2

    def __init__(self, temperature: float):
        if temperature <= 0:
            raise ConfigError(f"regime.temperature={temperature}: must be positive")
        self.temperature = temperature

    def examples_of(self, row: int, sampler: PairSampler) -> list[Example]:
        return [(row, sampler.positive(row))]

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = F.normalize(embeddings.reshape(-1, embeddings.shape[-1]), dim=-1)
        y = labels.reshape(-1)
        self_pair = torch.eye(len(y), dtype=torch.bool, device=z.device)
        logits = (z @ z.T / self.temperature).masked_fill(
            self_pair, float("-inf")
        )  # an anchor is not its own candidate
        log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
        positive = (y[:, None] == y[None, :]) & ~self_pair  # every anchor has its pair, at least
        # Mean log-probability of each anchor's positives (SupCon's L_out), averaged over anchors.
        return -(log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1)).mean()


class Triplets(Objective):
    """Margin triplet loss on cosine distance d = 1 - cos: max(0, d(a, p) - d(a, n) + margin);
    each row anchors one (anchor, positive, negative) triplet per iteration."""

    rows_per_example = 3

    def __init__(self, margin: float):
        if margin <= 0:
            raise ConfigError(f"regime.margin={margin}: must be positive")
        self.margin = margin

    def examples_of(self, row: int, sampler: PairSampler) -> list[Example]:
        return [(row, sampler.positive(row), sampler.negative(row))]

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        anchor, positive, negative = embeddings.unbind(1)
        # d(a, p) - d(a, n) = (1 - cos(a, p)) - (1 - cos(a, n)) = cos(a, n) - cos(a, p)
        gap = F.cosine_similarity(anchor, negative, dim=-1) - F.cosine_similarity(anchor, positive, dim=-1)
        return F.relu(gap + self.margin).mean()


LOSSES = ("cosine", "infonce", "triplet")


def make_objective(loss: str, temperature: float, margin: float) -> Objective:
    """The objective named by regime.loss, with the setting it reads."""
    if loss == "cosine":
        return CosinePairs()
    if loss == "infonce":
        return SupervisedInfoNCE(temperature)
    if loss == "triplet":
        return Triplets(margin)
    raise ConfigError(f"regime.loss={loss!r}: choose one of {LOSSES}")
