"""Linear heads fitted on embeddings without gradient epochs: each returns (weight, bias) with
logits = x @ weight.T + bias, for `embedding.write_head`.

A linear head cannot divide by |x|, so the cosine heads compute
    logits_j = scale * (c_j / |c_j|) . x / r = scale * cos(x, c_j) * |x| / r,
with r the mean norm of the embeddings the class vectors c_j came from: the exact cosine
(times scale) for a text of typical norm, and for every text the argmax of the cosine, since
|x| / r is one positive factor per text. So predictions are nearest-by-cosine exactly; only the
softmax sharpness varies with |x| (MiniLM's mean-pooled norms vary by about 20%: std / mean of
0.18 to 0.24 on the sales notes, Banking77, Financial PhraseBank and the Amazon reviews).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

PROTOTYPE_METRICS = ("cosine", "euclidean")


def cosine_head(class_vectors: torch.Tensor, reference_norm: float, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """logits_j = scale * cos(x, c_j) * |x| / reference_norm (see the module docstring)."""
    if reference_norm <= 0:
        raise ValueError(f"reference_norm={reference_norm}: the embeddings' mean norm must be positive")
    weight = scale * F.normalize(class_vectors.float(), dim=1) / reference_norm
    return weight, torch.zeros(class_vectors.shape[0])


def class_means(x: torch.Tensor, y: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(num_labels, hidden) mean embedding of each label's rows; every label needs one."""
    counts = torch.bincount(y, minlength=num_labels)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"label id(s) {missing} have no training row to fit a head on")
    sums = torch.zeros(num_labels, x.shape[1]).index_add_(0, y, x.float())
    return sums / counts.unsqueeze(1)


def prototype_head(
    x: torch.Tensor, y: torch.Tensor, num_labels: int, metric: str, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest class centroid (Snell et al., 2017) as a linear head.

    euclidean: argmin_j |x - p_j|^2 = argmax_j 2 p_j.x - |p_j|^2 (|x|^2 is the same for every j),
    so weight = 2P, bias = -|p_j|^2 and logits = |x|^2 - |x - p_j|^2: softmax ignores a per-text
    shift, so the probabilities are exactly softmax_j(-|x - p_j|^2), as in prototypical networks.
    cosine: the centroid of the unit-normalised embeddings (SimpleShot), through cosine_head.
    """
    if metric == "euclidean":
        prototypes = class_means(x, y, num_labels)
        return 2 * prototypes, -(prototypes**2).sum(1)
    if metric == "cosine":
        prototypes = class_means(F.normalize(x.float(), dim=1), y, num_labels)
        return cosine_head(prototypes, x.norm(dim=1).mean().item(), scale)
    raise ValueError(f"metric={metric!r}: a prototype head measures by one of {PROTOTYPE_METRICS}")


def fit_logistic_regression(x: Any, y: Any, C: float, max_iter: int, seed: int) -> Any:
    """scikit-learn's (multinomial, L2) LogisticRegression fitted on x (dense or scipy sparse) and
    label ids y; not converging within max_iter is an error (RuntimeError), not a warning in a log."""
    # Imported here: scikit-learn takes about a second to load and only the fitted heads need it.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            return model.fit(x, y)
        except ConvergenceWarning as err:
            raise RuntimeError(
                f"logistic regression did not converge in max_iter={max_iter} iterations; raise regime.max_iter "
                "(or lower regime.C to regularise more)"
            ) from err


def logistic_regression_head(
    x: torch.Tensor, y: torch.Tensor, num_labels: int, C: float, max_iter: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's (multinomial, L2) LogisticRegression on the embeddings, as a linear head.
    A label without a training row (a small train_rows) is never predicted (over_all_labels)."""
    if (present := len(torch.unique(y))) < 2:
        raise ValueError(f"{present} label(s) have training rows; a fitted head needs two or more")
    model = fit_logistic_regression(x.double().numpy(), y.numpy(), C, max_iter, seed)
    coef, intercept = over_all_labels(model, num_labels)
    weight, bias = torch.from_numpy(coef).float(), torch.from_numpy(intercept).float()
    if weight.shape[0] == 1:
        # Binary: scikit-learn keeps one row, z = w.x + b = logit of class 1. Logits (-z/2, z/2)
        # give softmax = (1 - sigmoid(z), sigmoid(z)): its probabilities exactly.
        weight, bias = torch.cat([-weight / 2, weight / 2]), torch.cat([-bias / 2, bias / 2])
    return weight, bias


# exp(-1e4) is 0 in float32 and float64, and -1e4 stays finite through softmax and log-softmax.
ABSENT_LOGIT = -1e4


def over_all_labels(model: Any, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted coefficients and intercepts as rows of every label, when some label had no row.

    With every label present, scikit-learn's own shapes are kept (binary: one row, the logit of
    label 1, read by TfidfClassifier.scores). Otherwise a label without rows gets zero coefficients
    and the intercept ABSENT_LOGIT; a binary fit of two present labels among more is spread over
    them as (-z/2, z/2), which has the same softmax.
    """
    classes, coef, intercept = model.classes_, model.coef_, model.intercept_
    if len(classes) == n_labels:
        return coef, intercept
    if len(classes) == 2:
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    full_coef = np.zeros((n_labels, coef.shape[1]), dtype=coef.dtype)
    full_intercept = np.full(n_labels, ABSENT_LOGIT, dtype=intercept.dtype)
    full_coef[classes], full_intercept[classes] = coef, intercept
    return full_coef, full_intercept
