"""Linear probe, then fine-tune (LP-FT; Kumar et al., 2022): start the head from a head fitted on
the frozen backbone's embeddings instead of from random weights.

A random head over 77 labels sends large, arbitrary gradients into the pretrained body for the
first few hundred steps, while it is still learning which direction is which label; a fitted head
starts at the probe's accuracy (0.927 on Banking77 with MiniLM) and the body's updates go to what
the probe gets wrong. The fit is one pass over the training rows in eval mode plus the head fit
(about 30 s for 9,000 rows here), timed as training time.

`auto`, the default, is logistic_regression wherever the classifier has a pooled embedding and a
one-linear head, else a random head; the job's metrics (`train/head_init`) say which and why. The
curves that made it the default: docs/benchmarks.md ("Learning curves and the size rule").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier
from lora_lab.models.embedding import embed_split, has_embeddings, head_linear, require_embeddings, write_head
from lora_lab.models.fitted_heads import logistic_regression_head, prototype_head

if TYPE_CHECKING:
    from lora_lab.data.datamodule import TextClassificationDataModule

HEAD_INITS = ("logistic_regression", "prototype")
AUTO = "auto"


def check_head_init(classifier: Classifier, method: str | None) -> None:
    """Fail at construction, before any work, on an unknown method or a head it cannot write."""
    if method is None or method == AUTO:
        return
    if method not in HEAD_INITS:
        raise ConfigError(
            f"module.head_init={method!r}: use auto, null (a random head) or one of {', '.join(HEAD_INITS)}"
        )
    require_embeddings(classifier, f"<any> with module.head_init={method}")


def resolve_head_init(classifier: Classifier, method: str | None) -> tuple[str | None, str]:
    """The head init a job runs (None: a random head) and why, for the job's metrics and closing table."""
    check_head_init(classifier, method)
    if method is None:
        return None, "random (module.head_init=null)"
    if method != AUTO:
        return method, f"{method} on the frozen backbone's embeddings (module.head_init={method})"
    if not has_embeddings(classifier):
        return None, "random (auto: this head exposes no pooled embedding to fit on)"
    try:
        head_linear(classifier)
    except TypeError:
        return None, "random (auto: the head has more than one linear layer)"
    return "logistic_regression", "logistic_regression on the frozen backbone's embeddings (auto: LP-FT)"


def init_head(
    classifier: Classifier, datamodule: TextClassificationDataModule, method: str, seed: int, batch_size: int
) -> None:
    """Write a head fitted on the training rows' embeddings (as the model is now) into the classifier,
    embedding `batch_size` rows a pass."""
    x, y = embed_split(classifier, datamodule, "train", batch_size)
    num_labels = len(classifier.id2label)
    if method == "logistic_regression":
        # scikit-learn's defaults (C=1, L2), as the fewshot regime's probe: its logits are on the
        # scale cross-entropy training continues from.
        weight, bias = logistic_regression_head(x, y, num_labels, C=1.0, max_iter=1000, seed=seed)
    else:
        # Cosine centroids at scale 20 (the temperature 0.05 MiniLM was trained at).
        weight, bias = prototype_head(x, y, num_labels, "cosine", scale=20.0)
    write_head(classifier, weight, bias)
