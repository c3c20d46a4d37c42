"""`stack=tfidf`: after the job's model is trained and tested, stack it with a TF-IDF model.

The order keeps the test split out of every choice:
1. the TF-IDF model (conf/regime/tfidf.yaml, as `stack.model`) is fitted on the job's training
   texts, its C picked on validation (regimes/tfidf.py);
2. both models' probabilities on the validation rows pick the mixing weight (models/stack.py);
3. only then are the test rows scored, once, by both parts and by the mix.

metrics.json's test/ and val/acc_best keys are the stack's (the model the job ships, so sweeps and
reports compare it like any other configuration); `parts/<name>/...` keep each part's own scores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lora_lab.errors import ConfigError
from lora_lab.models.metrics import scores_of_probabilities
from lora_lab.models.stack import WEIGHT_GRID, Stack, mix, pick_weight, tfidf_probabilities
from lora_lab.models.tfidf import TfidfClassifier
from lora_lab.regimes.base import Regime
from lora_lab.regimes.tfidf import Tfidf

if TYPE_CHECKING:
    from lora_lab.job.build import BuiltJob

log = logging.getLogger(__name__)
# The keys a stack replaces in metrics.json, kept for its first part under parts/<regime>/.
SCORE_KEYS = ("acc", "f1_macro", "precision_macro", "recall_macro", "loss")
VAL_KEYS = ("acc", "f1_macro", "precision_macro", "recall_macro")


class Stacker:
    """The `stack` config group: which model to stack the job's with, and the weights to try."""

    def __init__(self, model: Tfidf, weights: Sequence[float] = WEIGHT_GRID):
        if not isinstance(model, Tfidf):
            raise TypeError(f"stack.model: a TF-IDF regime (conf/regime/tfidf.yaml), not {type(model).__name__}")
        grid = sorted(float(w) for w in weights)
        if not grid or grid[0] < 0 or grid[-1] > 1:
            raise ConfigError(f"stack.weights={list(weights)}: weights of the trained model, each in [0, 1]")
        self.model, self.weights = model, grid

    def applies_to(self, regime: Regime) -> bool:
        """Not to a TF-IDF job (it would average a model with itself), nor to one that learns from no
        labelled row (zero-shot: a TF-IDF part fitted on the training rows would make it something else)."""
        return regime.name != self.model.name and regime.learns_from_rows

    def fit(self, job: BuiltJob, metrics: dict[str, Any]) -> tuple[Stack, dict[str, Any]]:
        """The stack of the tested job, and metrics.json's content with the stack's scores."""
        start = time.perf_counter()
        datamodule, regime = job.datamodule, job.regime.name
        splits = datamodule.splits
        val_y, test_y = (torch.tensor(datamodule.tokenized[s].labels) for s in ("validation", "test"))
        tfidf = TfidfClassifier(datamodule.id2label)
        self.model.fit(
            tfidf,
            splits["train"].texts,
            datamodule.tokenized["train"].labels,
            splits["validation"].texts,
            val_y.tolist(),
        )
        model_val, tfidf_val = (
            split_probabilities(job, "validation"),
            tfidf_probabilities(tfidf, splits["validation"].texts),
        )
        weight, table = pick_weight(model_val, tfidf_val, val_y, self.weights)
        stacked_val = scores_of_probabilities(mix(model_val, tfidf_val, weight), val_y, "val")
        # The test rows, once, now that every choice is made.
        model_test, tfidf_test = split_probabilities(job, "test"), tfidf_probabilities(tfidf, splits["test"].texts)
        mixed = mix(model_test, tfidf_test, weight)
        parts = {
            regime: scores_of_probabilities(model_test, test_y, "test"),
            self.model.name: scores_of_probabilities(tfidf_test, test_y, "test"),
        }
        stacked = scores_of_probabilities(mixed, test_y, "test")
        picked = next(row for row in table if row["weight"] == weight)
        info = {
            "parts": {"model": regime, "bag_of_words": self.model.name},
            "picked_on": "validation",
            "criterion": "log loss (models/stack.py pick_weight)",
            "weights_tried": table,
            "tfidf": tfidf.info,
        }
        out = dict(metrics)
        for name, scores in parts.items():
            out |= {f"parts/{name}/test/{k}": scores[f"test/{k}"] for k in SCORE_KEYS}
        out[f"parts/{regime}/val/acc_best"] = metrics["val/acc_best"]
        out |= {f"parts/{regime}/val/{k}": metrics[f"val/{k}"] for k in VAL_KEYS if f"val/{k}" in metrics}
        out |= {f"val/{k}": stacked_val[f"val/{k}"] for k in VAL_KEYS}  # the mix's, as its test scores
        out |= {f"test/{k}": stacked[f"test/{k}"] for k in SCORE_KEYS}
        out |= {
            "test/f1_per_class": dict(zip(datamodule.labels, stacked["f1_per_class"])),
            "test/confusion_matrix": stacked["confusion_matrix"],
            "val/acc_best": picked["val_acc"],
            "stack/weight": weight,
            "stack/with": self.model.name,
            "stack/val_log_loss": picked["val_log_loss"],
        }
        # Fitting the TF-IDF part and picking the weight is training time (the test scoring is a few % of it).
        out["time/stack_s"] = time.perf_counter() - start
        out["time/train_s"] = metrics.get("time/train_s", 0.0) + out["time/stack_s"]
        log.info(
            "stack: weight %.2f on %s (validation log loss %.4f); test acc %s %.4f, %s %.4f, stack %.4f",
            weight,
            regime,
            picked["val_log_loss"],
            regime,
            parts[regime]["test/acc"],
            self.model.name,
            parts[self.model.name]["test/acc"],
            stacked["test/acc"],
        )
        return Stack(weight, tfidf, info), out


@torch.inference_mode()
def split_probabilities(job: BuiltJob, split: str) -> torch.Tensor:
    """(rows, labels) softmax of the job's classifier on a split, in the split's row order, in the
    precision the trainer tested in (its autocast), with a chunked text's windows averaged."""
    datamodule, module = job.datamodule, job.module.eval()
    loader = datamodule.val_dataloader() if split == "validation" else datamodule.test_dataloader()
    order = [i for batch in loader.batch_sampler for i in batch]
    chunks = []
    with job.trainer.precision_plugin.forward_context():
        for batch in loader:
            chunks.append(module.eval_logits(batch).softmax(-1))  # in passes, as the test loop ran
    probs = torch.empty(len(order), len(datamodule.labels))
    probs[torch.tensor(order)] = torch.cat(chunks)
    return probs
