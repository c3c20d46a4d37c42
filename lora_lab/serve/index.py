"""/v1/similar's index: the training texts of a model, embedded by that model's own pooled embedding.

Built when the model loads (on the model thread), from the Source config the job trained on
(ModelSource.dataset): the reviewer sees the labelled training texts nearest to a text, by the
same representation the model's head reads. Rows beyond `max_rows` are left out (stated in
GET /v1/adapters as similar_index_rows); a dataset that cannot be read leaves no index, with a
warning in the log, and /v1/similar answers 404 saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from hydra.utils import instantiate

from lora_lab.serve.engine import Engine, Served

log = logging.getLogger(__name__)


@dataclass
class SimilarIndex:
    vectors: torch.Tensor  # (n, hidden), unit length
    texts: list[str]
    labels: list[str]

    def nearest(self, query: torch.Tensor, k: int) -> list[dict]:
        """The k rows of highest cosine similarity to `query` (a unit vector), best first."""
        scores = self.vectors @ query
        top = scores.topk(min(k, len(self.texts)))
        return [
            {"text": self.texts[i], "label": self.labels[i], "similarity": float(s)}
            for s, i in zip(top.values.tolist(), top.indices.tolist())
        ]


def build_index(engine: Engine, served: Served, max_rows: int) -> SimilarIndex | None:
    """Embed the model's training split (the first max_rows rows), or None if it cannot be read."""
    if served.source.dataset is None:
        log.warning("%s: no training data config (an export without one): no /v1/similar index", served.name)
        return None
    try:
        train = instantiate(served.source.dataset).load()["train"]
        vectors = engine.embed(served.name, train.texts[:max_rows])
    except Exception as err:  # the model serves without an index; the log says why
        log.warning("%s: no /v1/similar index (%s: %s)", served.name, type(err).__name__, err)
        return None
    return SimilarIndex(vectors, train.texts[:max_rows], train.labels[:max_rows])
